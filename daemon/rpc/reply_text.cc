#include "daemon/rpc/reply_text.h"

#include <string>
#include <vector>

#include "daemon/model/utf8.h"

namespace lockstep::daemon {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

void MakeValidUtf8(Message* m) {
  const Reflection* r = m->GetReflection();
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(*m, &fields);
  for (const FieldDescriptor* f : fields) {
    if (f->type() == FieldDescriptor::TYPE_STRING) {
      if (f->is_repeated()) {
        for (int i = 0, n = r->FieldSize(*m, f); i < n; ++i) {
          std::string scratch;
          const std::string& v = r->GetRepeatedStringReference(*m, f, i, &scratch);
          if (!IsValidUtf8(v)) r->SetRepeatedString(m, f, i, ValidUtf8(v));
        }
      } else {
        std::string scratch;
        const std::string& v = r->GetStringReference(*m, f, &scratch);
        if (!IsValidUtf8(v)) r->SetString(m, f, ValidUtf8(v));
      }
    } else if (f->type() == FieldDescriptor::TYPE_MESSAGE) {
      if (f->is_repeated()) {
        for (int i = 0, n = r->FieldSize(*m, f); i < n; ++i) {
          MakeValidUtf8(r->MutableRepeatedMessage(m, f, i));
        }
      } else {
        MakeValidUtf8(r->MutableMessage(m, f));
      }
    }
  }
}

}  // namespace lockstep::daemon
