#include "daemon/drivers/sqlite_schema.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <tuple>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace lockstep::daemon {
namespace {

std::string Quote(const std::string& s) {
  return absl::StrCat("\"", absl::StrReplaceAll(s, {{"\"", "\"\""}}), "\"");
}

std::string Text(SQLite::Statement& q, int column) {
  return q.getColumn(column).isNull() ? "" : q.getColumn(column).getString();
}

// "NO ACTION" is what no clause means.
std::string Action(const std::string& a) {
  std::string up = absl::AsciiStrToUpper(a);
  return up == "NO ACTION" ? "" : up;
}

// Where `keyword` (upper case) starts as a whole word in `sql` outside
// literals and quoted names, from `from`; npos when it does not.
size_t FindKeyword(const std::string& sql, const std::string& keyword, size_t from) {
  char quote = 0;
  for (size_t i = from; i < sql.size(); ++i) {
    const char c = sql[i];
    if (quote != 0) {
      if (c == quote || (quote == '[' && c == ']')) quote = 0;
      continue;
    }
    if (c == '\'' || c == '"' || c == '`' || c == '[') {
      quote = c;
      continue;
    }
    if (i > 0 && (std::isalnum(static_cast<unsigned char>(sql[i - 1])) || sql[i - 1] == '_')) {
      continue;
    }
    if (sql.size() - i < keyword.size()) return std::string::npos;
    if (!absl::EqualsIgnoreCase(sql.substr(i, keyword.size()), keyword)) continue;
    const size_t end = i + keyword.size();
    if (end < sql.size() && (std::isalnum(static_cast<unsigned char>(sql[end])) || sql[end] == '_')) {
      continue;
    }
    return i;
  }
  return std::string::npos;
}

// The text inside the parentheses that open at or after `from`, and where
// it ends; nullopt when they do not close.
std::optional<std::pair<std::string, size_t>> Parenthesized(const std::string& sql, size_t from) {
  size_t open = sql.find('(', from);
  if (open == std::string::npos) return std::nullopt;
  int depth = 0;
  char quote = 0;
  for (size_t i = open; i < sql.size(); ++i) {
    const char c = sql[i];
    if (quote != 0) {
      if (c == quote) quote = 0;
      continue;
    }
    if (c == '\'' || c == '"' || c == '`') {
      quote = c;
    } else if (c == '(') {
      ++depth;
    } else if (c == ')' && --depth == 0) {
      return std::make_pair(sql.substr(open + 1, i - open - 1), i + 1);
    }
  }
  return std::nullopt;
}

}  // namespace

std::vector<std::string> SqliteChecks(const std::string& create_table) {
  std::vector<std::string> out;
  size_t at = FindKeyword(create_table, "CHECK", 0);
  while (at != std::string::npos) {
    auto inner = Parenthesized(create_table, at + 5);
    if (!inner) break;
    out.push_back(NormalizeExpression(inner->first));
    at = FindKeyword(create_table, "CHECK", inner->second);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Schema ReadSqliteSchema(SQLite::Database& db, const SchemaFilter& filter) {
  Schema schema;
  std::vector<std::pair<std::string, std::string>> tables;  // name, CREATE text
  SQLite::Statement objects(db,
                            "SELECT type, name, tbl_name, COALESCE(sql, '') FROM sqlite_master "
                            "WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name");
  while (objects.executeStep()) {
    const std::string type = Text(objects, 0), name = Text(objects, 1), table = Text(objects, 2);
    const std::string sql = Text(objects, 3);
    if (filter.Skips(name) || filter.Skips(table)) continue;
    if (type == "table") {
      tables.emplace_back(name, sql);
    } else if (type == "view") {
      schema.views[name] = NormalizeExpression(sql);
    } else if (type == "trigger") {
      schema.triggers[name] = NormalizeExpression(sql);
    }
  }
  for (const auto& [name, sql] : tables) {
    SchemaTable& t = schema.tables[name];
    std::vector<std::pair<int, std::string>> pk;
    SQLite::Statement cols(db, absl::StrCat("PRAGMA table_xinfo(", Quote(name), ")"));
    while (cols.executeStep()) {
      const int hidden = cols.getColumn(6).getInt();
      if (hidden == 1) continue;  // a virtual table's hidden column
      SchemaColumn c;
      c.type = NormalizeType(Text(cols, 2));
      c.not_null = cols.getColumn(3).getInt() != 0;
      c.default_value = NormalizeExpression(Text(cols, 4));
      c.generated = hidden == 2 || hidden == 3;
      t.columns[Text(cols, 1)] = std::move(c);
      if (int k = cols.getColumn(5).getInt(); k > 0) pk.emplace_back(k, Text(cols, 1));
    }
    std::sort(pk.begin(), pk.end());
    for (auto& [k, column] : pk) t.primary_key.push_back(column);

    std::vector<std::tuple<std::string, bool, std::string>> indexes;  // name, unique, origin
    SQLite::Statement list(db, absl::StrCat("PRAGMA index_list(", Quote(name), ")"));
    while (list.executeStep()) {
      indexes.emplace_back(Text(list, 1), list.getColumn(2).getInt() != 0, Text(list, 3));
    }
    for (const auto& [index, unique, origin] : indexes) {
      if (origin == "pk") continue;
      std::vector<std::string> columns;
      bool expression = false;
      SQLite::Statement info(db, absl::StrCat("PRAGMA index_xinfo(", Quote(index), ")"));
      while (info.executeStep()) {
        if (info.getColumn(5).getInt() == 0) continue;  // not a key column
        expression = expression || info.getColumn(1).getInt() == -2;
        columns.push_back(Text(info, 2));
      }
      if (origin == "u") {
        t.uniques.push_back(columns);
        continue;
      }
      if (filter.Skips(index)) continue;
      SQLite::Statement q(db, "SELECT COALESCE(sql, '') FROM sqlite_master WHERE name = ?");
      q.bind(1, index);
      const std::string create = q.executeStep() ? Text(q, 0) : "";
      SchemaIndex i;
      i.columns = std::move(columns);
      i.unique = unique;
      if (size_t where = FindKeyword(create, "WHERE", 0); where != std::string::npos) {
        i.where = NormalizeExpression(create.substr(where + 5));
      }
      if (expression) {
        // Only the CREATE INDEX text has an expression: the whole key list.
        size_t on = FindKeyword(create, "ON", 0);
        auto keys = on == std::string::npos ? std::nullopt : Parenthesized(create, on);
        i.columns = {NormalizeExpression(keys ? keys->first : create)};
      }
      t.indexes[index] = std::move(i);
    }
    std::sort(t.uniques.begin(), t.uniques.end());

    std::map<int, SchemaForeignKey> fks;
    SQLite::Statement fk(db, absl::StrCat("PRAGMA foreign_key_list(", Quote(name), ")"));
    while (fk.executeStep()) {
      SchemaForeignKey& f = fks[fk.getColumn(0).getInt()];
      f.ref_table = Text(fk, 2);
      f.columns.push_back(Text(fk, 3));
      f.ref_columns.push_back(Text(fk, 4));
      f.on_update = Action(Text(fk, 5));
      f.on_delete = Action(Text(fk, 6));
    }
    for (auto& [id, f] : fks) t.foreign_keys.push_back(std::move(f));
    t.checks = SqliteChecks(sql);
  }
  return schema;
}

}  // namespace lockstep::daemon
