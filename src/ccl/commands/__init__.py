"""The ``ccl`` commands, one module each.

Each module has ``register(subparsers)``, which adds its parser and sets ``func`` to its
``run(args) -> int``. Building the parser imports no torch: a command module imports the
library (``ccl.engine``, ``ccl.evaluation``, ...) inside ``run`` only, so ``ccl --help``
answers at once. Library modules never import a command module.
"""
