"""Serving an exported classifier without PyTorch or this package: ``image_classifier`` (numpy
and Pillow only: decode, normalise, classify; also what ingestion and predict call, so there is
one implementation) and ``mlflow_model`` (the MLflow pyfunc model, logged "from code").

Nothing here imports the rest of ft_pipelines: both files are copied into the logged MLflow
model and imported there as top-level modules."""
