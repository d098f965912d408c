"""python -m services.intake: run the intake service."""

from services.common.service_main import main

if __name__ == "__main__":
    main("intake")
