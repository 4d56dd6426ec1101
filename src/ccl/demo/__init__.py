"""The demo wing: ``ccl demo``, ``ccl synth`` and ``ccl pretrain-teacher`` on the embedded
synthetic benchmark (docs/DEMO.md).

* :mod:`~ccl.demo.synth` generates the benchmark (its pictures in
  :mod:`~ccl.demo.synth_video`, its sounds in :mod:`~ccl.demo.synth_audio`);
  :mod:`~ccl.demo.pretrain` trains the teachers on its corpora, :mod:`~ccl.demo.probe`
  measures them with linear probes and :mod:`~ccl.demo.structure` measures how the audio
  teacher's embeddings relate the classes.
* :mod:`~ccl.demo.paths` is the layout of a demo folder and how a rerun knows what is done;
  :mod:`~ccl.demo.jobs` runs jobs side by side in worker processes.
* :mod:`~ccl.demo.pipeline` prepares a seed's data and runs the demo (one seed or several),
  :mod:`~ccl.demo.compare` the paper's comparison, :mod:`~ccl.demo.tune` the validation
  choice of every method's setting (the same budget for each); :mod:`~ccl.demo.tables`
  makes their tables.

It sits on top of the library, next to :mod:`ccl.commands`: no library module imports it.
"""
