"""Extensions, created unbound and attached to an app by ``create_app``."""

from flask_sqlalchemy import SQLAlchemy

from loyalty.db import Base

db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
