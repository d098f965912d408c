from services.common.migrate import run_env
from services.supervision.orm import metadata

run_env(metadata=metadata)
