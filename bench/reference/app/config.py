import os


class Settings:
    def __init__(self) -> None:
        self.database_url = os.environ["DATABASE_URL"]
        self.secret = os.environ["BETTER_AUTH_SECRET"]
        if len(self.secret.encode()) < 32:
            raise RuntimeError("BETTER_AUTH_SECRET must be at least 32 bytes")


settings = Settings()
