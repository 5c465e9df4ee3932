"""Extensions, created unbound and attached to an app by ``create_app``."""

from flask_babel import Babel
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect

from loyalty.db import Base

db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
# Checks nothing by itself (WTF_CSRF_CHECK_DEFAULT is off): the console calls csrf.protect().
csrf = CSRFProtect()
# The console's language and formats (its locale selector: loyalty.console.language).
babel = Babel()
