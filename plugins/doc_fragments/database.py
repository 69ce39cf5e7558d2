# -*- coding: utf-8 -*-
# Copyright: clinops.upgrade contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    """Connection options shared by the modules that talk to a product's database."""

    DOCUMENTATION = r"""
options:
  engine:
    description:
      - The database engine.
      - V(postgresql) uses psycopg and the PostgreSQL client programs; V(mysql) covers MariaDB and MySQL
        through PyMySQL and the mariadb/mysql client programs; V(sqlite) uses Python's sqlite3 on O(path);
        V(firebird) uses firebird-driver and C(gbak) on O(path) (FireBird and RedDatabase);
        V(files) is an offline folder such as an embedded Derby database or a 4D data folder, at O(path);
        V(mssql) is Microsoft SQL Server.
      - Each module says which engines it supports; another one is refused before anything is touched.
    type: str
    required: true
    choices: [postgresql, mysql, sqlite, firebird, files, mssql]
  database:
    description:
      - Name of the database on the server. Required for V(postgresql), V(mysql) and V(mssql).
      - For V(firebird) on a server, the database path or alias as the server knows it (O(path) is used when unset).
    type: str
  login_host:
    description:
      - Host of the database server. Unset means the local socket (PostgreSQL, MariaDB) or embedded access (Firebird).
    type: str
  login_port:
    description:
      - TCP port of the database server. Unset means the engine's default
        (5432 PostgreSQL, 3306 MySQL/MariaDB, 3050 Firebird, 1433 SQL Server).
    type: int
  login_user:
    description:
      - User to connect as. Unset means the engine's default (the OS user for PostgreSQL and MariaDB, SYSDBA for Firebird).
      - For V(mssql), a SQL Server login (C(sqlcmd -U)); unset means Windows authentication (C(sqlcmd -E)) as the
        account the task runs as.
    type: str
  login_password:
    description:
      - Password of O(login_user). It is never put on a command line or in the environment of another user,
        and never returned.
      - For V(mssql) it reaches C(sqlcmd) in C(SQLCMDPASSWORD), in the environment of that one child process only.
    type: str
  login_unix_socket:
    description:
      - Folder of the PostgreSQL socket, or path of the MariaDB/MySQL socket file.
    type: str
  login_instance:
    description:
      - SQL Server named instance (V(mssql) only), such as V(SQLEXPRESS); C(sqlcmd -S tcp:host\instance)
        finds its port through the SQL Server Browser. Give O(login_port) instead for a fixed port; not both.
    type: str
  path:
    description:
      - The database file (V(sqlite), V(firebird)) or folder (V(files)).
    type: path
  connect_timeout:
    description:
      - Seconds to wait for the database server to accept a connection.
    type: int
    default: 10
"""
