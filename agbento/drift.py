"""`python -m agbento.drift`: the same as `agbento drift` (agbento/cli/drift.py)."""

if __name__ == "__main__":
    import sys

    from agbento.cli import run

    run(["drift", *sys.argv[1:]])
