from fastapi import APIRouter, HTTPException, Response, status
from sqlmodel import Session, select

from app.auth import UserId
from app.db import engine
from app.models import Task, TaskCreate, TaskRead, TaskUpdate, utcnow

router = APIRouter(prefix="/api/{user_id}/tasks", tags=["tasks"])


def get_owned_task(session: Session, user_id: int, task_id: int) -> Task:
    task = session.get(Task, task_id)
    if task is None or task.user_id != user_id:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail="Task not found")
    return task


def save(session: Session, task: Task) -> Task:
    session.add(task)
    session.commit()
    session.refresh(task)
    return task


@router.get("", response_model=list[TaskRead])
def list_tasks(user_id: UserId, completed: bool | None = None):
    statement = select(Task).where(Task.user_id == user_id)
    if completed is not None:
        statement = statement.where(Task.is_completed == completed)
    statement = statement.order_by(Task.created_at.desc(), Task.id.desc())
    with Session(engine) as session:
        return session.exec(statement).all()


@router.post("", response_model=TaskRead, status_code=status.HTTP_201_CREATED)
def create_task(user_id: UserId, task_in: TaskCreate, response: Response):
    with Session(engine) as session:
        task = save(session, Task.model_validate(task_in, update={"user_id": user_id}))
    response.headers["Location"] = f"/api/{user_id}/tasks/{task.id}"
    return task


@router.get("/{task_id}", response_model=TaskRead)
def get_task(user_id: UserId, task_id: int):
    with Session(engine) as session:
        return get_owned_task(session, user_id, task_id)


@router.put("/{task_id}", response_model=TaskRead)
def update_task(user_id: UserId, task_id: int, task_in: TaskUpdate):
    with Session(engine) as session:
        task = get_owned_task(session, user_id, task_id)
        task.sqlmodel_update(task_in.model_dump(exclude_unset=True))
        task.updated_at = utcnow()
        return save(session, task)


@router.patch("/{task_id}/complete", response_model=TaskRead)
def toggle_task(user_id: UserId, task_id: int):
    with Session(engine) as session:
        task = get_owned_task(session, user_id, task_id)
        task.is_completed = not task.is_completed
        task.updated_at = utcnow()
        return save(session, task)


@router.delete("/{task_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_task(user_id: UserId, task_id: int):
    with Session(engine) as session:
        session.delete(get_owned_task(session, user_id, task_id))
        session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
