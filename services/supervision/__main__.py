"""python -m services.supervision: run the supervision service."""

from services.common.service_main import main

if __name__ == "__main__":
    main("supervision")
