// A database's schema in one canonical form, whatever its dialect: what
// lockstep compares to tell whether a database really holds what its
// version rows claim (schema drift).
//
// Drivers fill a Schema by introspection (Driver::ReadSchema); Text() is a
// stable text form (objects sorted by name, columns by name, generated names
// left out where the dialect makes them up), Fingerprint() its SHA-256, and
// Diff() the differences a person can act on.
//
// Example:
//   std::vector<SchemaDifference> d = Diff(expected, found);
//   for (const SchemaDifference& x : d) std::cout << Describe(x) << "\n";
//   // table orders missing
//   // column users.status type differs: VARCHAR(20) expected, TEXT found
#ifndef LOCKSTEP_DAEMON_SCHEMA_SCHEMA_H_
#define LOCKSTEP_DAEMON_SCHEMA_SCHEMA_H_

#include <map>
#include <string>
#include <vector>

namespace lockstep::daemon {

struct SchemaColumn {
  std::string type;  // normalized: NormalizeType()
  bool not_null = false;
  std::string default_value;  // normalized expression; empty: none
  bool generated = false;     // a generated (computed) column
  bool operator==(const SchemaColumn&) const = default;
};

struct SchemaIndex {
  std::vector<std::string> columns;  // in order; an expression as written
  bool unique = false;
  std::string where;  // a partial index's predicate, normalized
  bool operator==(const SchemaIndex&) const = default;
};

struct SchemaForeignKey {
  std::vector<std::string> columns;
  std::string ref_table;
  std::vector<std::string> ref_columns;
  std::string on_update;  // "" for NO ACTION
  std::string on_delete;
  bool operator==(const SchemaForeignKey&) const = default;
};

struct SchemaTable {
  std::map<std::string, SchemaColumn> columns;  // by name
  std::vector<std::string> primary_key;         // in key order
  std::map<std::string, SchemaIndex> indexes;   // by name (named by the migration)
  // Constraints are keyed by what they say, not their name: SQLite keeps
  // no name for most, and PostgreSQL makes names up (users_email_key).
  std::vector<std::vector<std::string>> uniques;  // sorted
  std::vector<SchemaForeignKey> foreign_keys;     // sorted by Text
  std::vector<std::string> checks;                // normalized expressions, sorted
  bool operator==(const SchemaTable&) const = default;
};

struct Schema {
  std::map<std::string, SchemaTable> tables;
  std::map<std::string, std::string> views;     // name -> normalized definition
  std::map<std::string, std::string> triggers;  // name -> normalized definition
  std::map<std::string, std::vector<std::string>> enums;  // PostgreSQL: name -> labels
  std::map<std::string, std::string> sequences;           // PostgreSQL: name -> type
  bool operator==(const Schema&) const = default;
};

// One line per object, sorted; the same schema always gives the same text.
std::string SchemaText(const Schema& schema);
// Lowercase hex SHA-256 of SchemaText.
std::string SchemaFingerprint(const Schema& schema);
// The SHA-256 of `bytes`, as 64 lower-case hex digits.
std::string Sha256Hex(const std::string& bytes);

struct SchemaDifference {
  std::string kind;    // table, column, primary key, index, unique, foreign key, check,
                       // view, trigger, enum, sequence
  std::string name;    // "orders", "users.nickname", "users (email)"
  std::string change;  // missing, unexpected, different
  std::string expected;  // for different: what was expected ...
  std::string found;     // ... and what the database holds
  bool operator==(const SchemaDifference&) const = default;
};

// What `found` lacks, adds or changes against `expected`, in a stable order:
// tables, then per table its columns, key, indexes and constraints, then
// views, triggers, enums, sequences; within each, what is missing or
// different in name order, then what is unexpected.
std::vector<SchemaDifference> Diff(const Schema& expected, const Schema& found);
// "table orders missing", "column users.nickname unexpected",
// "column orders.status type differs: VARCHAR(20) expected, TEXT found".
std::string Describe(const SchemaDifference& d);

// Normalizers the drivers share. A declared type: upper case, single
// spaces, none around parentheses and commas ("varchar ( 20 )" ->
// "VARCHAR(20)").
std::string NormalizeType(const std::string& type);
// An expression (default, check, index predicate): whitespace collapsed as
// for types (case kept, a space before "(" kept), redundant outer
// parentheses removed.
std::string NormalizeExpression(const std::string& expr);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_SCHEMA_SCHEMA_H_
