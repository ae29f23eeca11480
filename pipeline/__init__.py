"""Audio-visual emotion recognition pipeline (ABAW 2020 transfer-learning system).

The importable library behind the DVC stages in ``stages/``. Modules here never read
``params.yaml`` or ``sys.argv`` and do no I/O at import time; stage scripts pass
paths and typed parameters in.
"""
