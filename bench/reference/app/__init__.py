"""The seed plan's task API: FastAPI + SQLModel + python-jose + psycopg2, served by uvicorn."""
