"""A small but real host webmail that uses flask-popaccounts.

Run it with ``python -m example_app`` (or ``flask --app example_app run``). On first
run it creates ``instance/`` with a SQLite database, a Flask secret key and a Fernet
key for the extension, and two demo users (alice, bob) whose passwords it prints.

``python -m example_app`` (``make demo``) also starts a demo mailbox on this machine
(:mod:`example_app.demo_mailbox`, :func:`start_demo`): a real POP3 and SMTP server on
loopback with 300 sample messages, offered in the wizard as "Demo mailbox (this
machine)", and the system mailer that emails the send-as confirmation codes.

Any config key can be set from the environment with Flask's ``FLASK_`` prefix (values
are parsed as JSON when they can be), e.g. for a local test server::

    FLASK_POPACCOUNTS_ALLOW_PRIVATE_HOSTS=true \\
    FLASK_POPACCOUNTS_CA_FILE=/tmp/ca.pem \\
    FLASK_POPACCOUNTS_ALLOWED_POP3_PORTS='[110, 995, 11995]' python -m example_app
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from flask import Flask, redirect, render_template, request, url_for
from flask_babel import gettext, lazy_gettext
from flask_login import (
    LoginManager,
    UserMixin,
    login_user,
    logout_user,
)
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect, FlaskForm
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from werkzeug.security import check_password_hash, generate_password_hash
from wtforms import PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired

from flask_popaccounts import PopAccounts
from flask_popaccounts.web.security import add_security_headers

from . import languages
from .languages import N_
from .mail import register_mail

if TYPE_CHECKING:
    from .demo_mailbox import DemoMailbox

ROOT = Path(__file__).resolve().parent.parent
DEMO_USERS = ("alice", "bob")


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
login_manager = LoginManager()
csrf = CSRFProtect()


class User(UserMixin, db.Model):  # type: ignore[name-defined]
    """The webmail's own users (the extension only ever sees ``get_id()``)."""

    __tablename__ = "example_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password)

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)


class LoginForm(FlaskForm):
    username = StringField(lazy_gettext("Username"), validators=[DataRequired()])
    password = PasswordField(lazy_gettext("Password"), validators=[DataRequired()])
    submit = SubmitField(lazy_gettext("Sign in"))


@login_manager.user_loader
def _load_user(user_id: str) -> User | None:
    try:
        return db.session.get(User, int(user_id))
    except (TypeError, ValueError):
        return None


def _instance_secret(app: Flask, name: str, make: Any) -> str:
    """A secret kept in instance/<name>, generated on first run (mode 0600)."""
    return _secret_file(Path(app.instance_path) / name, make)


def _secret_file(path: Path, make: Any) -> str:
    if path.exists():
        return path.read_text().strip()
    value = str(make())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def create_app(config: dict[str, Any] | None = None, *, instance_path: str | None = None,
               demo: DemoMailbox | None = None) -> Flask:
    """The example webmail. ``config`` overrides everything (tests pass TESTING etc.).

    With ``demo`` (a running :mod:`.demo_mailbox`), its settings come after the
    built-in ones and before the environment's (``demo_mailbox.config``).
    """
    from cryptography.fernet import Fernet

    app = Flask(__name__, template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "static"),
                instance_path=instance_path, instance_relative_config=True)
    os.makedirs(app.instance_path, exist_ok=True)
    app.config.update(
        SQLALCHEMY_DATABASE_URI=f"sqlite:///{Path(app.instance_path) / 'example.db'}",
        POPACCOUNTS_MAILBOX_ENDPOINT="mailbox",
        POPACCOUNTS_BASE_TEMPLATE="base.html",
        POPACCOUNTS_SCHEDULER_ENABLED=True,
        # Flask-SQLAlchemy's pool gives 15 connections: room for these and the pages
        # (SQLite has one writer anyway)
        POPACCOUNTS_WORKERS=8,
        EXAMPLE_CREATE_DEMO_USERS=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    if demo is not None:
        from . import demo_mailbox

        app.config.update(demo_mailbox.config(demo))
    app.config.from_prefixed_env()
    app.config.update(config or {})
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _instance_secret(app, "secret_key",
                                                    lambda: secrets.token_hex(32))
    if not app.config.get("POPACCOUNTS_SECRET_KEYS"):
        app.config["POPACCOUNTS_SECRET_KEYS"] = [_instance_secret(
            app, "popaccounts_key", lambda: Fernet.generate_key().decode())]

    db.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "login"
    login_manager.login_message = N_("Sign in to read your mail.")
    login_manager.localize_callback = gettext
    csrf.init_app(app)
    languages.init_app(app)  # Flask-Babel with the webmail's selectors, before the extension
    # The scheduler starts only once the tables exist (its first dispatch runs at once).
    run_scheduler = bool(app.config["POPACCOUNTS_SCHEDULER_ENABLED"])
    app.config["POPACCOUNTS_SCHEDULER_ENABLED"] = False
    PopAccounts(app, db=db, timezone=languages.user_timezone)
    app.config["POPACCOUNTS_SCHEDULER_ENABLED"] = run_scheduler

    _register_routes(app)
    # Every page of the webmail gets the extension's security headers (CSP: no inline
    # script or style anywhere; a view's own headers, like a message body's, are kept).
    app.after_request(add_security_headers)
    __import__("example_app.compose", fromlist=["x"]).register_compose(app)
    _register_cli(app)

    with app.app_context():
        create_tables(app)
        if app.config["EXAMPLE_CREATE_DEMO_USERS"] and db.session.scalar(
                select(User.id).limit(1)) is None:
            click.echo(gettext("First run: creating demo users (change these passwords!)"))
            for name, password in create_demo_users().items():
                click.echo(f"  {name} / {password}")
    if run_scheduler:
        from flask_popaccounts.jobs.scheduler import start_in_process

        start_in_process(app)
    return app


def start_demo(instance_path: str | None = None, *, config: dict[str, Any] | None = None,
               pop3_port: int | None = None, smtp_port: int | None = None
               ) -> tuple[Flask, DemoMailbox]:
    """What ``python -m example_app`` runs: the demo mailbox, then the webmail using it.

    The demo mailbox's password is kept in ``instance/demo_mailbox_password`` and its
    TLS files (a CA made for this run) in ``instance/demo-mailbox/``; it listens on
    ports 19995 (POP3) and 19587 (SMTP) unless they are busy (or other ports are
    given: 0 for free ones, as the tests do). The caller stops it (``demo.stop()``).
    """
    from . import demo_mailbox

    # The folder Flask itself would choose (next to the package, as create_app's)
    instance = Path(instance_path or Flask(__name__).instance_path)
    instance.mkdir(parents=True, exist_ok=True)
    password = _secret_file(instance / "demo_mailbox_password",
                            lambda: secrets.token_urlsafe(12))
    demo = demo_mailbox.start(
        instance / "demo-mailbox", password=password,
        pop3_port=demo_mailbox.DEMO_POP3_PORT if pop3_port is None else pop3_port,
        smtp_port=demo_mailbox.DEMO_SMTP_PORT if smtp_port is None else smtp_port)
    try:
        app = create_app(config, instance_path=str(instance), demo=demo)
    except BaseException:
        demo.stop()
        raise
    return app, demo


def create_tables(app: Flask) -> None:
    """The webmail's own tables, then the extension's (its migrations when available)."""
    db.create_all()
    from flask_popaccounts import get_state
    from flask_popaccounts.storage import migrations

    upgrade = getattr(migrations, "upgrade", None)
    if upgrade is not None:  # the extension's Alembic lineage (flask popaccounts db upgrade)
        upgrade(get_state(app).engine, "heads")
    else:
        get_state(app).ext.create_all(app)


def create_demo_users() -> dict[str, str]:
    """Create (or reset) alice and bob with fresh random passwords; returns them."""
    out: dict[str, str] = {}
    for name in DEMO_USERS:
        user = db.session.scalar(select(User).where(User.username == name))
        if user is None:
            user = User(username=name)
            db.session.add(user)
        password = secrets.token_urlsafe(9)
        user.set_password(password)
        out[name] = password
    db.session.commit()
    return out


def _register_cli(app: Flask) -> None:
    @app.cli.command("create-demo-users")
    def create_demo_users_command() -> None:
        """Create the demo users alice and bob (or reset their passwords) and print them."""
        for name, password in create_demo_users().items():
            click.echo(f"{name} / {password}")


def _local_path(target: str) -> bool:
    """A same-site path to redirect to (not //host, /\\host or a scheme)."""
    return (target.startswith("/") and not target.startswith(("//", "/\\"))
            and not any(ch in target for ch in "\r\n\t"))


def _register_routes(app: Flask) -> None:
    @app.route("/")
    def home() -> Any:
        return redirect(url_for("mailbox_home"))

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        form = LoginForm()
        error = None
        if form.validate_on_submit():
            user = db.session.scalar(select(User).where(User.username == form.username.data))
            if user is not None and user.check_password(form.password.data or ""):
                login_user(user)
                target = request.args.get("next") or ""
                if not _local_path(target):
                    target = url_for("mailbox_home")
                return redirect(target)
            error = gettext("Wrong username or password.")
        return render_template("login.html", form=form, error=error), (401 if error else 200)

    @app.route("/logout", methods=["POST"])
    def logout() -> Any:
        logout_user()
        return redirect(url_for("login"))

    register_mail(app)
