"""`python -m agbento.keys`: the same as `agbento keys` (agbento/cli/keys.py)."""

if __name__ == "__main__":
    import sys

    from agbento.cli import run

    run(["keys", *sys.argv[1:]])
