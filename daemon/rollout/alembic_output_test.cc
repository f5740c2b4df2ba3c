#include "daemon/rollout/alembic_output.h"

#include <gtest/gtest.h>

namespace lockstep::daemon {
namespace {

// Outputs as real Alembic 1.8 / SQLAlchemy 1.4 print them (abridged frames).
TEST(ErrorLineTest, SqlAlchemyWrappedDriverError) {
  EXPECT_EQ(ErrorLine(R"(Traceback (most recent call last):
  File "/usr/bin/alembic", line 33, in <module>
    sys.exit(load_entry_point('alembic==1.8.1', 'console_scripts', 'alembic')())
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) unable to open database file
(Background on this error at: https://sqlalche.me/e/14/e3q8)
)"),
            "sqlite3.OperationalError: unable to open database file");
}

TEST(ErrorLineTest, PostgresErrorWithStatementEcho) {
  EXPECT_EQ(ErrorLine(R"(INFO  [alembic.runtime.migration] Running upgrade  -> 3f2a1b9c0d11, create users
Traceback (most recent call last):
  File "x.py", line 1, in upgrade
sqlalchemy.exc.ProgrammingError: (psycopg2.errors.UndefinedTable) relation "invoices" does not exist
LINE 1: SELECT id FROM invoices
                       ^

[SQL: SELECT id FROM invoices]
(Background on this error at: https://sqlalche.me/e/14/f405)
)"),
            "psycopg2.errors.UndefinedTable: relation \"invoices\" does not exist");
}

TEST(ErrorLineTest, PlainPythonExceptionAndAlembicFailed) {
  EXPECT_EQ(ErrorLine("Traceback (most recent call last):\n  File \"m.py\", line 3\nKeyError: "
                      "'deadbeef0000'\n"),
            "KeyError: 'deadbeef0000'");
  EXPECT_EQ(ErrorLine("INFO  [alembic.runtime.migration] Context impl SQLiteImpl.\n"
                      "ERROR [alembic.util.messaging] Can't locate revision identified by 'zz'\n"
                      "FAILED: Can't locate revision identified by 'zz'\n"),
            "Can't locate revision identified by 'zz'");
}

TEST(ErrorLineTest, FallbackAndNothing) {
  EXPECT_EQ(ErrorLine("INFO  [alembic] Context impl\nno database URL: pass -x url=...\n"),
            "no database URL: pass -x url=...");
  EXPECT_EQ(ErrorLine("INFO  [alembic.runtime.migration] Context impl SQLiteImpl.\n"), "");
  EXPECT_EQ(ErrorLine(""), "");
  EXPECT_EQ(ErrorLine("ValueError: " + std::string(1000, 'x')).size(), 300 + std::string("…").size());
}

}  // namespace
}  // namespace lockstep::daemon
