"""python -m services.approval: run the approval service."""

from services.common.service_main import main

if __name__ == "__main__":
    main("approval")
