"""Settings: one object, read from FHIR_SERVER_* variables and CLI options, passed down."""

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FHIR_SERVER_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="Interface to listen on.")
    port: int = Field(default=8000, description="TCP port to listen on.")
    mongodb_uri: str | None = Field(
        default=None, description="MongoDB connection URI; without it the embedded store is used."
    )
    mongodb_database: str = Field(default="fhir_server", description="MongoDB database name.")
    data_dir: Path = Field(
        default=Path("data"),
        description="Folder of the embedded database and the generated secret key.",
    )
    secret_key: str | None = Field(
        default=None,
        description="Key that signs paging cursors; generated once into the data dir when unset.",
    )
    default_page_size: int = Field(default=20, ge=1, description="Search page size without _count.")
    max_page_size: int = Field(default=1000, ge=1, description="Largest _count a search accepts.")
    max_offset: int = Field(default=10_000, ge=0, description="Largest _offset a search accepts.")
    log_level: str = Field(default="info", description="Log level: debug, info, warning, error.")
    load: list[Path] = Field(
        default_factory=list, description="Files or folders of AsyncJobs to load at start."
    )
