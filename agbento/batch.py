"""`python -m agbento.batch`: the same as `agbento batch` (agbento/offline/batch.py)."""

if __name__ == "__main__":
    import sys

    from agbento.cli import run

    run(["batch", *sys.argv[1:]])
