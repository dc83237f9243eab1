"""The ``stliif`` command line.

It lives beside the library (not in ``stliif``, which never imports Prefect) and runs the
Prefect flows of the checkout (``flows/``), so install the checkout with ``pip install -e .``.
"""
