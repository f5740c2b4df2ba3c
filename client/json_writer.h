// A minimal streaming JSON writer for the CLI's `-o json` output. Field names
// written with it are a stable interface: release tooling parses them.
#ifndef LOCKSTEP_CLIENT_JSON_WRITER_H_
#define LOCKSTEP_CLIENT_JSON_WRITER_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace lockstep::client {

class JsonWriter {
 public:
  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  JsonWriter& Key(absl::string_view key);
  JsonWriter& String(absl::string_view value);
  JsonWriter& Int(long value);
  JsonWriter& Bool(bool value);
  JsonWriter& Null();
  JsonWriter& StringArray(const std::vector<std::string>& values);

  // The document, with a trailing newline.
  std::string Finish() const { return out_ + "\n"; }

 private:
  void Separate();

  std::string out_;
  std::vector<bool> first_;  // per open container: no element written yet
  bool after_key_ = false;
};

std::string JsonEscape(absl::string_view s);

}  // namespace lockstep::client

#endif  // LOCKSTEP_CLIENT_JSON_WRITER_H_
