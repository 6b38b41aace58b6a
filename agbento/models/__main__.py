"""`python -m agbento.models`: the same as `agbento models` (agbento/cli/models.py)."""

if __name__ == "__main__":
    import sys

    from agbento.cli import run

    run(["models", *sys.argv[1:]])
