"""Packaging for chatd: the daemon package plus the first-party plugins in plugins/."""
from setuptools import find_packages, setup

# First-party plugins live in plugins/ and are registered through the same "chatd"
# entry-point group a third-party plugin would use; chatd never imports them by name.
PLUGIN_PACKAGES = ["chatd_demo", "chatd_openai", "chatd_anthropic", "chatd_filters"]

setup(
    name="chatd",
    version="0.1.0",
    description="Self-hosted real-time AI chat daemon",
    python_requires=">=3.11",
    packages=find_packages(include=["chatd", "chatd.*"]) + PLUGIN_PACKAGES,
    package_dir={name: f"plugins/{name}" for name in PLUGIN_PACKAGES},
    package_data={"chatd": ["py.typed"]},
    install_requires=[
        "tornado>=6.4",
        "pluggy>=1.5",
        "PyJWT[crypto]>=2.13",
        "argon2-cffi>=23.1",
        "aiosqlite>=0.20",
        "msgspec>=0.18",
        "prometheus-client>=0.20",
        "redis>=5.0",
        "openai>=1.40",
        "anthropic>=0.40",
        "tiktoken>=0.7",
    ],
    extras_require={
        # asyncpg: the PostgreSQL store's driver (fast, well kept, with its own pool).
        "postgres": ["asyncpg>=0.30"],
        # PyMongo's async API (AsyncMongoClient); motor is end of life.
        "mongodb": ["pymongo>=4.13"],
        "test": [
            "asyncpg>=0.30",
            "pymongo>=4.13",
            "nx-27017>=0.8",  # a MongoDB-wire-compatible server for the MongoDB store's tests (no mongod here)
            "pytest>=8",
            "pytest-asyncio>=0.24",
            "hypothesis>=6",
            "psutil>=5.9",
            "playwright>=1.45",
            "ruff==0.17.6",  # pinned: a newer ruff may add findings to the selected rule sets
            "mypy==2.4.1",
        ],
    },
    entry_points={
        "console_scripts": ["chatd = chatd.cli:main"],
        "pytest11": ["chatd = chatd.pytest_plugin"],
        "chatd": ["demo = chatd_demo", "openai = chatd_openai", "anthropic = chatd_anthropic",
                  "filters = chatd_filters"],
    },
)
