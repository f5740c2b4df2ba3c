// What the online commands share: the call context, errors, times, tables.
#ifndef LOCKSTEP_CLIENT_ONLINE_COMMON_H_
#define LOCKSTEP_CLIENT_ONLINE_COMMON_H_

#include <google/protobuf/timestamp.pb.h>
#include <grpcpp/grpcpp.h>

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/cli_args.h"
#include "client/offline_commands.h"  // the exit codes

namespace lockstep::client {

struct Context {
  const CliArgs& args;
  std::ostream& out;
  std::ostream& err;
  bool json = false;
  bool color = false;  // stdout is a terminal (and NO_COLOR is unset)
  std::string server;
};

// --server, else $LOCKSTEP_SERVER, else 127.0.0.1:50051.
std::string Server(const CliArgs& args);
// The channel's credentials: TLS when --tls-ca (or $LOCKSTEP_TLS_CA) names
// the CA that signed lockstepd's certificate, with a client certificate from
// --tls-cert/--tls-key ($LOCKSTEP_TLS_CERT, $LOCKSTEP_TLS_KEY) when given;
// plaintext otherwise. A file that cannot be read is an error naming it.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(const CliArgs& args);
// The token to present: the first line of --token-file, else
// $LOCKSTEP_TOKEN, else "" (none). A file that cannot be read or holds no
// token is an error naming the file (never its content).
absl::StatusOr<std::string> Token(const CliArgs& args);
// A channel to `server` that sends "authorization: Bearer TOKEN" with every
// call when `token` is set.
std::shared_ptr<grpc::Channel> OpenChannel(const std::string& server,
                                           std::shared_ptr<grpc::ChannelCredentials> credentials,
                                           const std::string& token);
// Prints "FAILED: message" (and {"error": ...} with -o json); kExitError.
int Fail(Context& c, const std::string& message);
// Fail() for an RPC's status, saying where lockstepd was expected when unreachable.
int RpcFailure(Context& c, const grpc::Status& s);
// RFC 3339 in UTC; "" when unset.
std::string Time(const google::protobuf::Timestamp& t);
// Pads each column to its widest cell; the last column is not padded.
// `shown` is `rows` with colours added (same visible widths).
void PrintTable(std::ostream& out, const std::vector<std::vector<std::string>>& rows,
                const std::vector<std::vector<std::string>>& shown);
// "1 database", "3 databases".
std::string Plural(long n, const std::string& noun);
// A deadline `seconds` from now.
std::chrono::system_clock::time_point Deadline(int seconds);

// How long a call may take: a read; a change lockstepd plans or starts
// before it answers (a plan reads every database); a restore, which copies
// a whole database back.
inline constexpr int kReadSeconds = 10;
inline constexpr int kChangeSeconds = 120;
inline constexpr int kRestoreSeconds = 3600;

// RpcFailure() for a call that failed; a deadline that passed is said as such.
int CallFailure(Context& c, const grpc::Status& s, int seconds);

// Every unary call of lockstepd: a deadline `seconds` from now, and a
// failure printed and mapped to its exit code (CallFailure). Returns kExitOk
// when the call succeeded; `*resp` then holds the answer.
//
// Example:
//   v1::ListBackupsResponse resp;
//   int rc = Call(c, stub, &v1::Lockstep::Stub::ListBackups, req, &resp, kReadSeconds);
//   if (rc != kExitOk) return rc;
template <typename Stub, typename Request, typename Response>
int Call(Context& c, Stub& stub,
         grpc::Status (Stub::*rpc)(grpc::ClientContext*, const Request&, Response*),
         const Request& req, Response* resp, int seconds) {
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(seconds));
  grpc::Status s = (stub.*rpc)(&ctx, req, resp);
  return s.ok() ? kExitOk : CallFailure(c, s, seconds);
}

}  // namespace lockstep::client

#endif  // LOCKSTEP_CLIENT_ONLINE_COMMON_H_
