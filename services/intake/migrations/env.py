from services.common.migrate import run_env
from services.intake.orm import metadata

run_env(metadata=metadata)
