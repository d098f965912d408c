from services.common.migrate import run_env
from services.routing.orm import metadata

run_env(metadata=metadata)
