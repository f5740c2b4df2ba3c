#include "daemon/drivers/mysql_schema.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace lockstep::daemon {
namespace {

using mysql::Connection;
using mysql::Rows;

std::string Str(const std::optional<std::string>& v) { return v ? *v : ""; }

// "" for what InnoDB does when nothing is said (RESTRICT and NO ACTION
// behave the same there).
std::string Action(const std::string& rule) {
  return rule == "RESTRICT" || rule == "NO ACTION" ? "" : rule;
}

class Reader {
 public:
  Reader(Connection& c, const std::string& database, const SchemaFilter& filter)
      : c_(c), database_(database), db_(c.Quote(database)), filter_(filter) {}

  absl::StatusOr<Schema> Read() {
    Rows rows;
    if (!Query(absl::StrCat("SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
                            "WHERE TABLE_SCHEMA = ",
                            db_),
               &rows)) {
      return Failed();
    }
    for (const auto& r : rows) {
      const std::string name = Str(r[0]), type = Str(r[1]);
      if (filter_.Skips(name)) continue;
      if (type == "VIEW") {
        views_.insert(name);
      } else if (type == "SEQUENCE") {
        s_.sequences[name] = "BIGINT";
      } else {
        s_.tables[name];
      }
    }
    if (!Columns() || !Keys() || !ForeignKeys() || !Views() || !Triggers()) return Failed();
    Checks();  // MySQL before 8.0.16 has no CHECK_CONSTRAINTS: then none
    for (auto& [name, t] : s_.tables) {
      std::sort(t.uniques.begin(), t.uniques.end());
      std::sort(t.checks.begin(), t.checks.end());
      std::sort(t.foreign_keys.begin(), t.foreign_keys.end(),
                [](const SchemaForeignKey& a, const SchemaForeignKey& b) {
                  return std::tie(a.columns, a.ref_table, a.ref_columns) <
                         std::tie(b.columns, b.ref_table, b.ref_columns);
                });
    }
    return s_;
  }

 private:
  bool Query(const std::string& sql, Rows* rows) { return c_.Query(sql, rows, &error_); }
  absl::Status Failed() const {
    return absl::UnavailableError(
        absl::StrCat("cannot read the schema of ", mysql::Ident(database_), ": ", error_.message));
  }
  SchemaTable* Table(const std::string& name) {
    auto it = s_.tables.find(name);
    return it == s_.tables.end() ? nullptr : &it->second;
  }

  bool Columns() {
    Rows rows;
    if (!Query(absl::StrCat("SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, "
                            "COLUMN_DEFAULT, EXTRA, GENERATION_EXPRESSION FROM "
                            "information_schema.COLUMNS WHERE TABLE_SCHEMA = ",
                            db_),
               &rows)) {
      return false;
    }
    for (const auto& r : rows) {
      SchemaTable* t = Table(Str(r[0]));
      if (t == nullptr) continue;
      SchemaColumn col;
      col.type = MysqlType(Str(r[2]));
      col.not_null = Str(r[3]) == "NO";
      const std::string extra = absl::AsciiStrToLower(Str(r[5]));
      // MariaDB says "NULL" for a NULL default (and quotes literals); MySQL
      // gives NULL. Either way: no default.
      std::string def = r[4] && *r[4] != "NULL" ? *r[4] : "";
      if (absl::StrContains(extra, "generated") && !absl::StrContains(extra, "default_generated")) {
        col.generated = true;
        def = Str(r[6]);
      }
      if (absl::StrContains(extra, "auto_increment")) def = "AUTO_INCREMENT";
      if (size_t on = extra.find("on update "); on != std::string::npos) {
        absl::StrAppend(&def, def.empty() ? "" : " ", "ON UPDATE ",
                        absl::AsciiStrToUpper(extra.substr(on + 10)));
      }
      col.default_value = NormalizeExpression(def);
      t->columns[Str(r[1])] = std::move(col);
    }
    return true;
  }

  // The primary key, unique constraints (by content) and other indexes (by
  // name), from STATISTICS.
  bool Keys() {
    Rows uniques;
    if (!Query(absl::StrCat("SELECT TABLE_NAME, CONSTRAINT_NAME FROM "
                            "information_schema.TABLE_CONSTRAINTS WHERE TABLE_SCHEMA = ",
                            db_, " AND CONSTRAINT_TYPE = 'UNIQUE'"),
               &uniques)) {
      return false;
    }
    std::set<std::pair<std::string, std::string>> unique_names;
    for (const auto& r : uniques) unique_names.insert({Str(r[0]), Str(r[1])});
    Rows rows;
    if (!Query(absl::StrCat("SELECT TABLE_NAME, INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART "
                            "FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ",
                            db_, " ORDER BY TABLE_NAME, INDEX_NAME, SEQ_IN_INDEX"),
               &rows)) {
      return false;
    }
    std::map<std::pair<std::string, std::string>, SchemaIndex> found;
    for (const auto& r : rows) {
      SchemaIndex& i = found[{Str(r[0]), Str(r[1])}];
      i.unique = Str(r[2]) == "0";
      std::string column = r[3] ? *r[3] : "(expression)";
      if (r[4]) absl::StrAppend(&column, "(", *r[4], ")");
      i.columns.push_back(column);
    }
    for (auto& [key, index] : found) {
      SchemaTable* t = Table(key.first);
      if (t == nullptr) continue;
      if (key.second == "PRIMARY") {
        t->primary_key = index.columns;
      } else if (unique_names.count(key)) {
        t->uniques.push_back(index.columns);
      } else if (!filter_.Skips(key.second)) {
        t->indexes[key.second] = std::move(index);
      }
    }
    return true;
  }

  bool ForeignKeys() {
    Rows rows;
    if (!Query(
            absl::StrCat(
                "SELECT k.TABLE_NAME, k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_NAME, "
                "k.REFERENCED_COLUMN_NAME, r.UPDATE_RULE, r.DELETE_RULE FROM "
                "information_schema.KEY_COLUMN_USAGE k JOIN "
                "information_schema.REFERENTIAL_CONSTRAINTS r ON r.CONSTRAINT_SCHEMA = "
                "k.CONSTRAINT_SCHEMA AND r.TABLE_NAME = k.TABLE_NAME AND r.CONSTRAINT_NAME = "
                "k.CONSTRAINT_NAME WHERE k.TABLE_SCHEMA = ",
                db_,
                " AND k.REFERENCED_TABLE_NAME IS NOT NULL ORDER BY k.TABLE_NAME, "
                "k.CONSTRAINT_NAME, k.ORDINAL_POSITION"),
            &rows)) {
      return false;
    }
    std::map<std::pair<std::string, std::string>, SchemaForeignKey> found;
    for (const auto& r : rows) {
      SchemaForeignKey& fk = found[{Str(r[0]), Str(r[1])}];
      fk.columns.push_back(Str(r[2]));
      fk.ref_table = Str(r[3]);
      fk.ref_columns.push_back(Str(r[4]));
      fk.on_update = Action(Str(r[5]));
      fk.on_delete = Action(Str(r[6]));
    }
    for (auto& [key, fk] : found) {
      if (SchemaTable* t = Table(key.first)) t->foreign_keys.push_back(std::move(fk));
    }
    return true;
  }

  void Checks() {
    Rows rows;
    // MariaDB names the table; MySQL 8 only through TABLE_CONSTRAINTS.
    if (!Query(absl::StrCat("SELECT TABLE_NAME, CHECK_CLAUSE FROM "
                            "information_schema.CHECK_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ",
                            db_),
               &rows)) {
      rows.clear();
      if (!Query(absl::StrCat("SELECT t.TABLE_NAME, c.CHECK_CLAUSE FROM "
                              "information_schema.CHECK_CONSTRAINTS c JOIN "
                              "information_schema.TABLE_CONSTRAINTS t ON t.CONSTRAINT_SCHEMA = "
                              "c.CONSTRAINT_SCHEMA AND t.CONSTRAINT_NAME = c.CONSTRAINT_NAME AND "
                              "t.CONSTRAINT_TYPE = 'CHECK' WHERE c.CONSTRAINT_SCHEMA = ",
                              db_),
                 &rows)) {
        return;
      }
    }
    for (const auto& r : rows) {
      if (SchemaTable* t = Table(Str(r[0]))) t->checks.push_back(NormalizeExpression(Str(r[1])));
    }
  }

  bool Views() {
    Rows rows;
    if (!Query(absl::StrCat("SELECT TABLE_NAME, VIEW_DEFINITION FROM information_schema.VIEWS "
                            "WHERE TABLE_SCHEMA = ",
                            db_),
               &rows)) {
      return false;
    }
    // The server writes every name in full (`shop`.`users`.`id`): without
    // the database's own name, a scratch copy reads the same.
    const std::string own = mysql::Ident(database_) + ".";
    for (const auto& r : rows) {
      if (views_.count(Str(r[0]))) {
        s_.views[Str(r[0])] = NormalizeExpression(absl::StrReplaceAll(Str(r[1]), {{own, ""}}));
      }
    }
    return true;
  }

  bool Triggers() {
    Rows rows;
    if (!Query(absl::StrCat("SELECT TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION, "
                            "EVENT_OBJECT_TABLE, ACTION_STATEMENT FROM information_schema.TRIGGERS "
                            "WHERE TRIGGER_SCHEMA = ",
                            db_),
               &rows)) {
      return false;
    }
    for (const auto& r : rows) {
      if (filter_.Skips(Str(r[0]))) continue;
      s_.triggers[Str(r[0])] = NormalizeExpression(
          absl::StrCat(Str(r[1]), " ", Str(r[2]), " ON ", Str(r[3]), " FOR EACH ROW ", Str(r[4])));
    }
    return true;
  }

  Connection& c_;
  const std::string database_;
  const std::string db_;  // quoted literal
  const SchemaFilter& filter_;
  mysql::Error error_;
  Schema s_;
  std::set<std::string> views_;
};

}  // namespace

std::string MysqlType(const std::string& column_type) {
  // ENUM and SET labels are data: their case is kept (the server writes
  // COLUMN_TYPE in one canonical form already).
  if (const size_t open = column_type.find('(');
      open != std::string::npos && column_type.find('\'') != std::string::npos) {
    return NormalizeType(column_type.substr(0, open)) + column_type.substr(open);
  }
  std::string t = NormalizeType(column_type);
  // Integer display widths say nothing about what a column holds (MySQL
  // 8.0.19 stopped showing them); TINYINT(1) is how MySQL spells BOOLEAN.
  for (const char* integer : {"TINYINT", "SMALLINT", "MEDIUMINT", "INT", "BIGINT"}) {
    const std::string prefix = absl::StrCat(integer, "(");
    if (!absl::StartsWith(t, prefix) || t == "TINYINT(1)" || absl::StartsWith(t, "TINYINT(1) ")) {
      continue;
    }
    const size_t close = t.find(')');
    if (close != std::string::npos) t = integer + t.substr(close + 1);
    break;
  }
  return t;
}

absl::StatusOr<Schema> ReadMysqlSchema(Connection& c, const std::string& database,
                                       const SchemaFilter& filter) {
  return Reader(c, database, filter).Read();
}

}  // namespace lockstep::daemon
