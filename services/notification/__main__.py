"""python -m services.notification: run the notification service."""

from services.common.service_main import main

if __name__ == "__main__":
    main("notification")
