"""Run tracking with MLflow: ``hook`` makes every ``kedro run`` one MLflow run (registered in
settings.py); ``records`` turns data into parameters and metrics (also used by the study)."""
