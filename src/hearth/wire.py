"""Validators shared by the wire models."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError, ValidatorFunctionWrapHandler, WrapValidator
from pydantic_core import PydanticCustomError


def one_of(forms: str) -> WrapValidator:
    """Reports a value that fits no member of a union as one error naming the accepted forms.

    Pydantic would report the first member's complaint ("should be a valid
    string") even when the client clearly meant another form.
    """

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("union_form", "it must be {forms}", {"forms": forms}) from None

    return WrapValidator(validate)
