"""`python -m agbento.batch`: the batch client (agbento/offline/batch.py)."""

if __name__ == "__main__":
    import sys

    from agbento.offline.batch import main

    sys.exit(main())
