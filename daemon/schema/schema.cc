#include "daemon/schema/schema.h"

#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace lockstep::daemon {
namespace {

// Calls `out(c, quoted)` for each character of `s`, telling whether it is
// inside a '...' or "..." literal (quotes included).
template <typename Out>
void ForEachChar(const std::string& s, Out out) {
  char quote = 0;
  for (char c : s) {
    if (quote != 0) {
      out(c, true);
      if (c == quote) quote = 0;
    } else if (c == '\'' || c == '"') {
      quote = c;
      out(c, true);
    } else {
      out(c, false);
    }
  }
}

// Whitespace collapsed outside literals: one space after a comma, none
// before a comma or ")" nor after "(", one elsewhere; before "(" none in a
// type ("VARCHAR (20)"), one where the text had any in an expression
// ("IN ('a')"). Upper case outside literals when `type`.
std::string Tidy(const std::string& s, bool type) {
  std::string out;
  bool space = false;
  ForEachChar(s, [&](char c, bool quoted) {
    if (!quoted && std::isspace(static_cast<unsigned char>(c))) {
      space = true;
      return;
    }
    const bool tight = !quoted && (c == ')' || c == ',' || (type && c == '('));
    if (!out.empty() && out.back() == ',' && !tight) {
      out.push_back(' ');
    } else if (space && !out.empty() && out.back() != '(' && !tight) {
      out.push_back(' ');
    }
    space = false;
    out.push_back(!quoted && type ? static_cast<char>(std::toupper(static_cast<unsigned char>(c)))
                                  : c);
  });
  return out;
}

// Whether s[0] == '(' is closed by the last character (outside literals).
bool Enclosed(const std::string& s) {
  if (s.size() < 2 || s.front() != '(' || s.back() != ')') return false;
  int depth = 0;
  size_t i = 0;
  bool whole = true;
  ForEachChar(s, [&](char c, bool quoted) {
    if (!quoted && c == '(') ++depth;
    if (!quoted && c == ')') --depth;
    if (depth == 0 && i + 1 < s.size()) whole = false;
    ++i;
  });
  return whole;
}

std::string Columns(const std::vector<std::string>& columns) {
  return absl::StrCat("(", absl::StrJoin(columns, ", "), ")");
}

std::string ColumnText(const SchemaColumn& c) {
  std::string out = c.type.empty() ? "(no type)" : c.type;
  absl::StrAppend(&out, c.not_null ? " NOT NULL" : " NULL");
  if (!c.default_value.empty()) absl::StrAppend(&out, " DEFAULT ", c.default_value);
  if (c.generated) absl::StrAppend(&out, " GENERATED");
  return out;
}

std::string IndexText(const SchemaIndex& i) {
  std::string out = absl::StrCat(i.unique ? "UNIQUE " : "", Columns(i.columns));
  if (!i.where.empty()) absl::StrAppend(&out, " WHERE ", i.where);
  return out;
}

std::string ForeignKeyText(const SchemaForeignKey& f) {
  std::string out =
      absl::StrCat(Columns(f.columns), " REFERENCES ", f.ref_table, " ", Columns(f.ref_columns));
  if (!f.on_update.empty()) absl::StrAppend(&out, " ON UPDATE ", f.on_update);
  if (!f.on_delete.empty()) absl::StrAppend(&out, " ON DELETE ", f.on_delete);
  return out;
}

// Differences between two maps of named objects: missing, unexpected, and
// (when both have it) different by `text`.
template <typename V, typename Text>
void DiffNamed(const std::string& kind, const std::string& prefix,
               const std::map<std::string, V>& expected, const std::map<std::string, V>& found,
               Text text, std::vector<SchemaDifference>* out) {
  for (const auto& [name, e] : expected) {
    auto it = found.find(name);
    if (it == found.end()) {
      out->push_back({kind, prefix + name, "missing", text(e), ""});
    } else if (text(e) != text(it->second)) {
      out->push_back({kind, prefix + name, "different", text(e), text(it->second)});
    }
  }
  for (const auto& [name, f] : found) {
    if (!expected.count(name)) out->push_back({kind, prefix + name, "unexpected", "", text(f)});
  }
}

// Differences between two sets of unnamed constraints, by their text.
void DiffSets(const std::string& kind, const std::string& table,
              const std::set<std::string>& expected, const std::set<std::string>& found,
              std::vector<SchemaDifference>* out) {
  for (const std::string& e : expected) {
    if (!found.count(e)) out->push_back({kind, absl::StrCat(table, " ", e), "missing", e, ""});
  }
  for (const std::string& f : found) {
    if (!expected.count(f)) out->push_back({kind, absl::StrCat(table, " ", f), "unexpected", "", f});
  }
}

std::set<std::string> UniqueTexts(const SchemaTable& t) {
  std::set<std::string> out;
  for (const auto& u : t.uniques) out.insert(Columns(u));
  return out;
}
std::set<std::string> ForeignKeyTexts(const SchemaTable& t) {
  std::set<std::string> out;
  for (const auto& f : t.foreign_keys) out.insert(ForeignKeyText(f));
  return out;
}

void DiffTable(const std::string& name, const SchemaTable& e, const SchemaTable& f,
               std::vector<SchemaDifference>* out) {
  DiffNamed("column", name + ".", e.columns, f.columns, ColumnText, out);
  if (e.primary_key != f.primary_key) {
    auto pk = [](const std::vector<std::string>& k) { return k.empty() ? "none" : Columns(k); };
    out->push_back({"primary key", name, "different", pk(e.primary_key), pk(f.primary_key)});
  }
  DiffNamed("index", "", e.indexes, f.indexes, IndexText, out);
  DiffSets("unique", name, UniqueTexts(e), UniqueTexts(f), out);
  DiffSets("foreign key", name, ForeignKeyTexts(e), ForeignKeyTexts(f), out);
  auto checks = [](const SchemaTable& t) {
    std::set<std::string> out;
    for (const std::string& c : t.checks) out.insert(absl::StrCat("(", c, ")"));
    return out;
  };
  DiffSets("check", name, checks(e), checks(f), out);
}

}  // namespace

std::string NormalizeType(const std::string& type) { return Tidy(type, true); }

std::string NormalizeExpression(const std::string& expr) {
  std::string out = Tidy(expr, false);
  while (Enclosed(out)) out = Tidy(out.substr(1, out.size() - 2), false);
  return out;
}

std::string SchemaText(const Schema& s) {
  std::string out;
  for (const auto& [name, t] : s.tables) {
    absl::StrAppend(&out, "table ", name, "\n");
    for (const auto& [col, c] : t.columns) {
      absl::StrAppend(&out, "table ", name, " column ", col, " ", ColumnText(c), "\n");
    }
    if (!t.primary_key.empty()) {
      absl::StrAppend(&out, "table ", name, " primary key ", Columns(t.primary_key), "\n");
    }
    for (const auto& [idx, i] : t.indexes) {
      absl::StrAppend(&out, "table ", name, " index ", idx, " ", IndexText(i), "\n");
    }
    for (const std::string& u : UniqueTexts(t)) absl::StrAppend(&out, "table ", name, " unique ", u, "\n");
    for (const std::string& f : ForeignKeyTexts(t)) {
      absl::StrAppend(&out, "table ", name, " foreign key ", f, "\n");
    }
    for (const std::string& c : std::set<std::string>(t.checks.begin(), t.checks.end())) {
      absl::StrAppend(&out, "table ", name, " check ", c, "\n");
    }
  }
  for (const auto& [name, v] : s.views) absl::StrAppend(&out, "view ", name, " ", v, "\n");
  for (const auto& [name, v] : s.triggers) absl::StrAppend(&out, "trigger ", name, " ", v, "\n");
  for (const auto& [name, labels] : s.enums) {
    absl::StrAppend(&out, "enum ", name, " (", absl::StrJoin(labels, ", "), ")\n");
  }
  for (const auto& [name, type] : s.sequences) absl::StrAppend(&out, "sequence ", name, " ", type, "\n");
  return out;
}

std::string SchemaFingerprint(const Schema& schema) { return Sha256Hex(SchemaText(schema)); }

std::string Sha256Hex(const std::string& text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : digest) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 15]);
  }
  return out;
}

std::vector<SchemaDifference> Diff(const Schema& expected, const Schema& found) {
  std::vector<SchemaDifference> out;
  for (const auto& [name, e] : expected.tables) {
    auto it = found.tables.find(name);
    if (it == found.tables.end()) {
      out.push_back({"table", name, "missing", "", ""});
    } else {
      DiffTable(name, e, it->second, &out);
    }
  }
  for (const auto& [name, f] : found.tables) {
    if (!expected.tables.count(name)) out.push_back({"table", name, "unexpected", "", ""});
  }
  auto same = [](const std::string& v) { return v; };
  DiffNamed("view", "", expected.views, found.views, same, &out);
  DiffNamed("trigger", "", expected.triggers, found.triggers, same, &out);
  DiffNamed("enum", "", expected.enums, found.enums,
            [](const std::vector<std::string>& l) { return Columns(l); }, &out);
  DiffNamed("sequence", "", expected.sequences, found.sequences, same, &out);
  return out;
}

std::string Describe(const SchemaDifference& d) {
  if (d.change == "different") {
    return absl::StrCat(d.kind, " ", d.name, " differs: ", d.expected, " expected, ", d.found,
                        " found");
  }
  return absl::StrCat(d.kind, " ", d.name, " ", d.change);
}

}  // namespace lockstep::daemon
