#include "daemon/rpc/request_bounds.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace lockstep::daemon {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

grpc::Status TooLarge(const std::string& what) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, what);
}

grpc::Status Check(const Message& m, const std::string& prefix) {
  const Reflection* r = m.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  for (const FieldDescriptor* f : fields) {
    const std::string name = prefix + f->name();
    if (f->is_repeated()) {
      const int n = r->FieldSize(m, f);
      if (n > kMaxRequestListEntries) {
        return TooLarge(absl::StrCat(name, " has ", n, " entries; at most ",
                                     kMaxRequestListEntries));
      }
      for (int i = 0; i < n; ++i) {
        const std::string item = absl::StrCat(name, "[", i, "]");
        if (f->type() == FieldDescriptor::TYPE_STRING || f->type() == FieldDescriptor::TYPE_BYTES) {
          size_t size = r->GetRepeatedStringReference(m, f, i, nullptr).size();
          if (size > kMaxRequestString) {
            return TooLarge(absl::StrCat(item, " is ", size, " bytes; at most ", kMaxRequestString));
          }
        } else if (f->type() == FieldDescriptor::TYPE_MESSAGE) {
          grpc::Status s = Check(r->GetRepeatedMessage(m, f, i), item + ".");
          if (!s.ok()) return s;
        }
      }
    } else if (f->type() == FieldDescriptor::TYPE_STRING || f->type() == FieldDescriptor::TYPE_BYTES) {
      std::string scratch;
      size_t size = r->GetStringReference(m, f, &scratch).size();
      if (size > kMaxRequestString) {
        return TooLarge(absl::StrCat(name, " is ", size, " bytes; at most ", kMaxRequestString));
      }
    } else if (f->type() == FieldDescriptor::TYPE_MESSAGE) {
      grpc::Status s = Check(r->GetMessage(m, f), name + ".");
      if (!s.ok()) return s;
    }
  }
  return grpc::Status::OK;
}

}  // namespace

grpc::Status CheckRequestBounds(const Message& request) { return Check(request, ""); }

}  // namespace lockstep::daemon
