"""The bank's own Logic App functions: an example of the folder (see demobank.logic_apps.library).

Each ``@function`` is a step (``type: function``) every workflow can call by name. Annotate every parameter and
the result: they are checked when a workflow is validated and again when the step runs.
"""

from __future__ import annotations

from typing import Literal

from demobank.logic_apps.functions import function

GREETINGS = {"en": "Hello", "nl": "Hallo", "de": "Hallo", "fr": "Bonjour", "es": "Hola"}


@function
def greeting(first_name: str, language: Literal["en", "nl", "de", "fr", "es"] = "en") -> str:
    """How a message opens for a customer, in their language: ``greeting("Ada", "fr")`` → ``Bonjour Ada``."""
    return f"{GREETINGS[language]} {first_name.strip()}"
