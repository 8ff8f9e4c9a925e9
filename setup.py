from pathlib import Path

from setuptools import setup

setup(
    name="taskd",
    version="0.1.0",
    description="Per-user task-management REST service (Tornado + PostgreSQL)",
    long_description=Path("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # sql/ and migrations/ live at the top of the repository but ship inside the package.
    packages=["taskd", "taskd.db", "taskd.handlers", "taskd.sql", "taskd.migrations"],
    package_dir={"taskd.sql": "sql", "taskd.migrations": "migrations"},
    package_data={"taskd.sql": ["*.sql"], "taskd.migrations": ["*.sql"]},
    install_requires=[
        "tornado>=6.4",
        "psycopg[binary,pool]>=3.2",
        # AsyncConnectionPool.drain(), used by taskd/db/pool.py after a database restart
        "psycopg-pool>=3.3",
        "pyjwt[crypto]>=2.13",
        "pydantic>=2.7",
        "yoyo-migrations>=9.0",
        "orjson>=3.10",
        "pgserver>=0.1.4",
        "prometheus-client>=0.20",
        "swagger-ui-bundle>=1.1",
    ],
    extras_require={
        "test": [
            "pytest>=8",
            "pytest-tornasync>=0.6",
            "jsonschema>=4.23",
            "openapi-spec-validator>=0.7",
            # make fuzz: property-based tests from taskd's own OpenAPI document
            "schemathesis>=4.3",
        ],
        "dev": ["ruff>=0.8", "mypy>=1.13"],
    },
    entry_points={"console_scripts": ["taskd = taskd.cli:main"]},
)
