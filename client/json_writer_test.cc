#include "client/json_writer.h"

#include <gtest/gtest.h>

namespace lockstep::client {
namespace {

TEST(JsonWriterTest, NestedDocument) {
  JsonWriter w;
  w.BeginObject().Key("a").Int(1).Key("b").StringArray({"x", "y"}).Key("c").BeginArray();
  w.BeginObject().Key("ok").Bool(true).Key("n").Null().EndObject();
  w.EndArray().EndObject();
  EXPECT_EQ(w.Finish(), "{\"a\":1,\"b\":[\"x\",\"y\"],\"c\":[{\"ok\":true,\"n\":null}]}\n");
}

TEST(JsonWriterTest, Escapes) {
  EXPECT_EQ(JsonEscape("q\"b\\n\nt\t\x01 \xc3\xa9"), "\"q\\\"b\\\\n\\nt\\t\\u0001 \xc3\xa9\"");
  // Bytes that are not UTF-8 (a revision id or file name on disk) become
  // U+FFFD: the document stays valid JSON.
  EXPECT_EQ(JsonEscape("ab\xff\xfe"), "\"ab\xef\xbf\xbd\xef\xbf\xbd\"");
}

}  // namespace
}  // namespace lockstep::client
