// The documented name of a lockstep.v1 enum value, and back: the value's
// name without its type's prefix, in lower case
// (DATABASE_STATE_VERSION_ROWS_LOST <-> "version_rows_lost"). UNSPECIFIED is
// "". A number this build does not know (sent by a newer lockstepd) is
// shown as itself, e.g. "42", so nothing is hidden.
//
// Example:
//   std::string s = lockstep::v1::WireName(step.state());   // "succeeded"
//   auto v = lockstep::v1::ParseWireName<lockstep::v1::DatabaseState>("behind");
#ifndef LOCKSTEP_PROTO_WIRE_NAMES_H_
#define LOCKSTEP_PROTO_WIRE_NAMES_H_

#include <google/protobuf/descriptor.h>
#include <google/protobuf/generated_enum_reflection.h>

#include <cctype>
#include <optional>
#include <string>
#include <string_view>

namespace lockstep::v1 {
namespace wire_names_internal {

// "DatabaseState" -> "DATABASE_STATE_".
inline std::string PrefixOf(const google::protobuf::EnumDescriptor* d) {
  std::string out;
  for (char c : d->name()) {
    if (std::isupper(static_cast<unsigned char>(c)) && !out.empty()) out += '_';
    out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out + "_";
}

}  // namespace wire_names_internal

template <typename E>
std::string WireName(E value) {
  const auto* d = google::protobuf::GetEnumDescriptor<E>();
  const auto* v = d->FindValueByNumber(static_cast<int>(value));
  if (v == nullptr) return std::to_string(static_cast<int>(value));
  if (v->number() == 0) return "";
  std::string name = v->name().substr(wire_names_internal::PrefixOf(d).size());
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

// nullopt for a name that no value has; "" is UNSPECIFIED.
template <typename E>
std::optional<E> ParseWireName(std::string_view name) {
  const auto* d = google::protobuf::GetEnumDescriptor<E>();
  std::string full = wire_names_internal::PrefixOf(d);
  if (name.empty()) return static_cast<E>(0);
  for (char c : name) {
    if (!std::islower(static_cast<unsigned char>(c)) && c != '_') return std::nullopt;
    full += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  const auto* v = d->FindValueByName(full);
  if (v == nullptr || v->number() == 0) return std::nullopt;
  return static_cast<E>(v->number());
}

}  // namespace lockstep::v1

#endif  // LOCKSTEP_PROTO_WIRE_NAMES_H_
