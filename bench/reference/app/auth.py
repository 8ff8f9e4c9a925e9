from typing import Annotated

from fastapi import Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from jose import JWTError, jwt

from app.config import settings

bearer = HTTPBearer()


# Token checks do no I/O, so they run on the event loop rather than the thread pool.
async def token_user_id(
    credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)],
) -> int:
    try:
        claims = jwt.decode(credentials.credentials, settings.secret, algorithms=["HS256"])
        return int(claims["sub"])
    except (JWTError, KeyError, ValueError):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="Invalid or expired token",
            headers={"WWW-Authenticate": "Bearer"},
        ) from None


async def authorized_user_id(
    user_id: int, current_user_id: Annotated[int, Depends(token_user_id)]
) -> int:
    if user_id != current_user_id:
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Not your tasks")
    return user_id


UserId = Annotated[int, Depends(authorized_user_id)]
