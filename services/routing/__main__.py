"""python -m services.routing: run the routing service."""

from services.common.service_main import main

if __name__ == "__main__":
    main("routing")
