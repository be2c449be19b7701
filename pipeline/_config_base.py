"""The base of every config section model: frozen, unknown keys rejected; and the type of a code.

Owns :class:`_Model` (the pydantic base class of every section of the study config) and
``Code`` (a value code of a variable). The section models live in :mod:`pipeline._config_data`,
:mod:`pipeline._config_weight` and :mod:`pipeline._config_output`; :mod:`pipeline.config` joins
them into ``StudyConfig`` and loads the YAML.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

Code = int


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
