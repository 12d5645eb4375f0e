"""ft_pipelines: declarative, versioned fine-tuning and pruning of pretrained CNNs."""

__version__ = "0.1.0"
