// A Schema as JSON and back, for keeping expected schemas in the state
// store (what Alembic builds for a revision set survives a restart).
//
// Example:
//   std::string text = SchemaToJson(schema);
//   absl::StatusOr<Schema> back = SchemaFromJson(text);  // == schema
#ifndef LOCKSTEP_DAEMON_SCHEMA_SCHEMA_JSON_H_
#define LOCKSTEP_DAEMON_SCHEMA_SCHEMA_JSON_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/schema/schema.h"

namespace lockstep::daemon {

std::string SchemaToJson(const Schema& schema);
// DATA_LOSS naming what is wrong when `text` is not a schema SchemaToJson wrote.
absl::StatusOr<Schema> SchemaFromJson(absl::string_view text);

}  // namespace lockstep::daemon

#endif  // LOCKSTEP_DAEMON_SCHEMA_SCHEMA_JSON_H_
