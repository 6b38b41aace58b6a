"""`python -m agbento.spark`: Spark scoring (agbento/offline/spark.py)."""

if __name__ == "__main__":
    import sys

    from agbento.offline.spark import main

    sys.exit(main())
