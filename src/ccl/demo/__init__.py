"""The demo wing: ``ccl demo``, ``ccl synth`` and ``ccl pretrain-teacher`` on the embedded
synthetic benchmark. Library modules never import this package."""
