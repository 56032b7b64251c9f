"""The one error the pipeline reports to its user: what is wrong, in a sentence, exit 2."""


class PipelineError(Exception):
    """Bad input (a directory, a warehouse file, a setting): the message names it."""
