from services.common.migrate import run_env
from services.notification.orm import metadata

run_env(metadata=metadata)
