"""`python -m agbento.spark`: the same as `agbento spark` (agbento/offline/spark.py)."""

if __name__ == "__main__":
    import sys

    from agbento.cli import run

    run(["spark", *sys.argv[1:]])
