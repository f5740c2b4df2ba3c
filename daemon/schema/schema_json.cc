#include "daemon/schema/schema_json.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace lockstep::daemon {

using nlohmann::json;

void to_json(json& j, const SchemaColumn& c) {
  j = {{"type", c.type},
       {"not_null", c.not_null},
       {"default", c.default_value},
       {"generated", c.generated}};
}
void from_json(const json& j, SchemaColumn& c) {
  j.at("type").get_to(c.type);
  j.at("not_null").get_to(c.not_null);
  j.at("default").get_to(c.default_value);
  j.at("generated").get_to(c.generated);
}
void to_json(json& j, const SchemaIndex& i) {
  j = {{"columns", i.columns}, {"unique", i.unique}, {"where", i.where}};
}
void from_json(const json& j, SchemaIndex& i) {
  j.at("columns").get_to(i.columns);
  j.at("unique").get_to(i.unique);
  j.at("where").get_to(i.where);
}
void to_json(json& j, const SchemaForeignKey& f) {
  j = {{"columns", f.columns},
       {"ref_table", f.ref_table},
       {"ref_columns", f.ref_columns},
       {"on_update", f.on_update},
       {"on_delete", f.on_delete}};
}
void from_json(const json& j, SchemaForeignKey& f) {
  j.at("columns").get_to(f.columns);
  j.at("ref_table").get_to(f.ref_table);
  j.at("ref_columns").get_to(f.ref_columns);
  j.at("on_update").get_to(f.on_update);
  j.at("on_delete").get_to(f.on_delete);
}
void to_json(json& j, const SchemaTable& t) {
  j = {{"columns", t.columns}, {"primary_key", t.primary_key},   {"indexes", t.indexes},
       {"uniques", t.uniques}, {"foreign_keys", t.foreign_keys}, {"checks", t.checks}};
}
void from_json(const json& j, SchemaTable& t) {
  j.at("columns").get_to(t.columns);
  j.at("primary_key").get_to(t.primary_key);
  j.at("indexes").get_to(t.indexes);
  j.at("uniques").get_to(t.uniques);
  j.at("foreign_keys").get_to(t.foreign_keys);
  j.at("checks").get_to(t.checks);
}

std::string SchemaToJson(const Schema& s) {
  json j = {{"tables", s.tables},
            {"views", s.views},
            {"triggers", s.triggers},
            {"enums", s.enums},
            {"sequences", s.sequences}};
  return j.dump();
}

absl::StatusOr<Schema> SchemaFromJson(absl::string_view text) {
  try {
    json j = json::parse(text.begin(), text.end());
    Schema s;
    j.at("tables").get_to(s.tables);
    j.at("views").get_to(s.views);
    j.at("triggers").get_to(s.triggers);
    j.at("enums").get_to(s.enums);
    j.at("sequences").get_to(s.sequences);
    return s;
  } catch (const std::exception& e) {
    return absl::DataLossError(absl::StrCat("not a stored schema: ", e.what()));
  }
}

}  // namespace lockstep::daemon
