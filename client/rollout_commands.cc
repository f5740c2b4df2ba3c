#include "client/rollout_commands.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/json_writer.h"
#include "client/offline_commands.h"
#include "lockstep/v1/wire_names.h"

namespace lockstep::client {
namespace {

using v1::WireName;

template <typename Repeated>
std::vector<std::string> List(const Repeated& r) {
  return std::vector<std::string>(r.begin(), r.end());
}

std::string Rows(const google::protobuf::RepeatedPtrField<std::string>& rows) {
  return rows.empty() ? "<none>" : absl::StrJoin(rows, ",");
}

long Millis(const google::protobuf::Duration& d) {
  return static_cast<long>(d.seconds() * 1000 + d.nanos() / 1000000);
}

std::string Actor(const CliArgs& args) {
  if (auto a = args.Option("actor")) return *a;
  if (const char* env = std::getenv("LOCKSTEP_ACTOR"); env && *env) return env;
  // The account, not $USER (unset under cron, systemd and many CI runners).
  std::string user;
  if (const struct passwd* pw = ::getpwuid(::geteuid()); pw != nullptr && pw->pw_name != nullptr) {
    user = pw->pw_name;
  } else if (const char* env = std::getenv("USER"); env != nullptr && *env) {
    user = env;
  } else {
    user = absl::StrCat("uid", ::geteuid());
  }
  char host[256] = "";
  ::gethostname(host, sizeof host - 1);
  return absl::StrCat(user, "@", host);
}

std::vector<std::string> CommaList(const CliArgs& args, const std::string& name) {
  std::optional<std::string> v = args.Option(name);
  if (!v) return {};
  return absl::StrSplit(*v, ',', absl::SkipEmpty());
}

// ---- JSON (field names are documented in docs/reference.md) ------------------------

// A stage or step of a plan carries what would be done; of a rollout, also
// what happened (state, times, errors).
void WriteStage(JsonWriter& w, const v1::RolloutStage& s, bool plan) {
  w.BeginObject().Key("environment").String(s.environment());
  if (!plan) w.Key("state").String(WireName(s.state()));
  w.Key("soak_seconds").Int(static_cast<long>(s.soak().seconds()));
  w.Key("approval_required").Bool(s.approval_required());
  w.Key("approvals_required").Int(s.approvals_required());
  w.Key("distinct_from_requester").Bool(s.distinct_from_requester());
  if (!plan) {
    w.Key("approved_by").String(s.approved_by()).Key("approved_at").String(Time(s.approved_at()));
    w.Key("approvers").StringArray({s.approvers().begin(), s.approvers().end()});
  }
  w.Key("batch_size").Int(s.batch_size()).Key("max_parallel").Int(s.max_parallel());
  w.Key("max_failures").Int(s.max_failures()).Key("on_failure").String(WireName(s.on_failure()));
  w.Key("backup_required").Bool(s.backup_required());
  w.Key("canary_soak_seconds").Int(static_cast<long>(s.canary_soak().seconds()));
  w.Key("canary_approval_required").Bool(s.canary_approval_required());
  if (!plan) {
    w.Key("canary_approved_by").String(s.canary_approved_by());
    w.Key("canary_approved_at").String(Time(s.canary_approved_at()));
    w.Key("failures").Int(s.failures());
    w.Key("started_at").String(Time(s.started_at())).Key("finished_at").String(Time(s.finished_at()));
  }
  w.EndObject();
}

void WriteStep(JsonWriter& w, const v1::RolloutStep& s, bool plan) {
  w.BeginObject().Key("index").Int(s.index()).Key("environment").String(s.environment());
  w.Key("database").String(s.database()).Key("wave").Int(s.wave()).Key("canary").Bool(s.canary());
  w.Key("from").StringArray(List(s.from())).Key("expected").StringArray(List(s.expected()));
  w.Key("path").StringArray(List(s.path()));
  if (!plan) {
    w.Key("state").String(WireName(s.state())).Key("phase").String(WireName(s.phase()));
    w.Key("error").String(s.error()).Key("rollback").String(s.rollback());
    w.Key("exit_code").Int(s.exit_code()).Key("backup_id").Int(static_cast<long>(s.backup_id()));
    w.Key("attempts").Int(s.attempts()).Key("alembic_ms").Int(Millis(s.alembic_duration()));
    w.Key("output").String(s.output()).Key("output_log").String(s.output_log());
    w.Key("started_at").String(Time(s.started_at())).Key("finished_at").String(Time(s.finished_at()));
  }
  w.EndObject();
}

void WriteRollout(JsonWriter& w, const v1::Rollout& r) {
  w.BeginObject();
  w.Key("id").String(r.id()).Key("kind").String(r.kind()).Key("target").String(r.target());
  w.Key("target_revisions").StringArray(List(r.target_revisions()));
  w.Key("state").String(WireName(r.state())).Key("reason").String(r.reason());
  w.Key("created_by").String(r.created_by()).Key("override_promotion").Bool(r.override_promotion());
  w.Key("override_reason").String(r.override_reason());
  w.Key("override_window").String(r.override_window());
  w.Key("created_at").String(Time(r.created_at())).Key("updated_at").String(Time(r.updated_at()));
  w.Key("finished_at").String(Time(r.finished_at()));
  w.Key("stages").BeginArray();
  for (const v1::RolloutStage& s : r.stages()) WriteStage(w, s, false);
  w.EndArray().Key("steps").BeginArray();
  for (const v1::RolloutStep& s : r.steps()) WriteStep(w, s, false);
  w.EndArray().EndObject();
}

void WriteProblems(JsonWriter& w, const std::string& key,
                   const google::protobuf::RepeatedPtrField<v1::PlanProblem>& problems) {
  w.Key(key).BeginArray();
  for (const v1::PlanProblem& p : problems) {
    w.BeginObject().Key("database").String(p.database()).Key("code").String(p.code());
    w.Key("message").String(p.message()).EndObject();
  }
  w.EndArray();
}

// A plan: what a rollout would do, and what blocks it. No id, no state.
void WritePlan(JsonWriter& w, const v1::PlanRolloutResponse& resp) {
  const v1::Rollout& r = resp.plan();
  w.BeginObject();
  w.Key("kind").String(r.kind()).Key("target").String(r.target());
  w.Key("target_revisions").StringArray(List(r.target_revisions()));
  w.Key("blocked").Bool(resp.problems_size() > 0);
  WriteProblems(w, "problems", resp.problems());
  WriteProblems(w, "overridden", resp.overridden());
  w.Key("notes").StringArray(List(resp.notes()));
  w.Key("stages").BeginArray();
  for (const v1::RolloutStage& s : r.stages()) WriteStage(w, s, true);
  w.EndArray().Key("steps").BeginArray();
  for (const v1::RolloutStep& s : r.steps()) WriteStep(w, s, true);
  w.EndArray().EndObject();
}

void WriteBackup(JsonWriter& w, const v1::Backup& b) {
  w.BeginObject()
      .Key("id")
      .Int(static_cast<long>(b.id()))
      .Key("environment")
      .String(b.environment());
  w.Key("database").String(b.database()).Key("revisions").StringArray(List(b.revisions()));
  w.Key("path").String(b.path()).Key("size_bytes").Int(static_cast<long>(b.size_bytes()));
  w.Key("sha256").String(b.sha256()).Key("created_at").String(Time(b.created_at()));
  w.Key("rollout_id").String(b.rollout_id()).Key("took_ms").Int(Millis(b.took()));
  w.Key("safety_for").Int(static_cast<long>(b.safety_for())).Key("note").String(b.note());
  w.Key("restored_by").String(b.restored_by()).Key("restored_at").String(Time(b.restored_at()));
  w.EndObject();
}

// Where a backup came from: its rollout, or the restore it is the safety
// copy of.
std::string Origin(const v1::Backup& b) {
  if (b.safety_for() > 0) return absl::StrCat("safety for ", b.safety_for());
  return b.rollout_id().empty() ? "-" : b.rollout_id();
}

// ---- text ---------------------------------------------------------------------

struct Counts {
  int total = 0, succeeded = 0, failed = 0, skipped = 0, running = 0;
};

Counts CountSteps(const v1::Rollout& r, const std::string& environment) {
  Counts n;
  for (const v1::RolloutStep& s : r.steps()) {
    if (!environment.empty() && s.environment() != environment) continue;
    ++n.total;
    n.succeeded += s.state() == v1::STEP_STATE_SUCCEEDED;
    n.failed += s.state() == v1::STEP_STATE_FAILED;
    n.skipped += s.state() == v1::STEP_STATE_SKIPPED;
    n.running += s.state() == v1::STEP_STATE_RUNNING;
  }
  return n;
}

void PrintRollout(Context& c, const v1::Rollout& r, bool plan) {
  if (plan) {
    c.out << "plan: " << r.kind() << " to " << r.target() << " ("
          << absl::StrJoin(r.target_revisions(), ", ") << "), "
          << Plural(r.steps_size(), "database") << "\n";
  } else {
    c.out << "rollout " << r.id() << "  " << WireName(r.state()) << "  " << r.kind() << " to "
          << r.target() << " (" << absl::StrJoin(r.target_revisions(), ", ") << ")\n";
    c.out << "  created " << Time(r.created_at())
          << (r.created_by().empty() ? "" : " by " + r.created_by());
    if (!Time(r.finished_at()).empty()) c.out << ", finished " << Time(r.finished_at());
    c.out << "\n";
  }
  if (!r.reason().empty()) c.out << "  " << r.reason() << "\n";
  for (const v1::RolloutStage& st : r.stages()) {
    Counts n = CountSteps(r, st.environment());
    c.out << "\n" << st.environment();
    if (!plan) c.out << "  " << WireName(st.state());
    std::vector<std::string> policy;
    if (st.approval_required()) {
      std::string wanted = "approval required";
      if (st.approvals_required() > 1) {
        wanted = absl::StrCat(st.approvals_required(), " approvals required (", st.approvers_size(),
                              " so far)");
      }
      if (st.distinct_from_requester()) absl::StrAppend(&wanted, ", not by the requester");
      policy.push_back(st.approved_by().empty() ? wanted : "approved by " + st.approved_by());
    }
    if (st.soak().seconds() > 0) {
      policy.push_back(
          absl::StrCat("soak ", absl::FormatDuration(absl::Seconds(st.soak().seconds()))));
    }
    if (st.backup_required()) policy.push_back("backup required");
    if (st.canary_soak().seconds() > 0) {
      policy.push_back(absl::StrCat("canaries soak ",
                                    absl::FormatDuration(absl::Seconds(st.canary_soak().seconds()))));
    }
    if (st.canary_approval_required()) {
      policy.push_back(st.canary_approved_by().empty()
                           ? "canary approval required"
                           : "canaries approved by " + st.canary_approved_by());
    }
    policy.push_back(absl::StrCat("batch ", st.batch_size(), ", ", st.max_parallel(), " at once"));
    policy.push_back(absl::StrCat("max_failures ", st.max_failures()));
    policy.push_back("on_failure " + WireName(st.on_failure()));
    c.out << "  (" << absl::StrJoin(policy, "; ") << ")";
    if (!plan)
      c.out << "  " << n.succeeded << "/" << n.total << " done"
            << (n.failed ? absl::StrCat(", ", n.failed, " failed") : "");
    c.out << "\n";
    if (n.total == 0) c.out << "  nothing to do: every database is at the target\n";
    std::vector<std::vector<std::string>> rows;
    for (const v1::RolloutStep& s : r.steps()) {
      if (s.environment() != st.environment()) continue;
      std::vector<std::string> row = {
          absl::StrCat("  wave ", s.wave() + 1, s.canary() ? " (canary)" : ""), s.database(),
          absl::StrCat(Rows(s.from()), " -> ", Rows(s.expected())),
          Plural(s.path_size(), "revision")};
      if (!plan) {
        row.push_back(WireName(s.state()));
        std::string note = s.error();
        if (!s.rollback().empty()) note = absl::StrCat(note, " [", s.rollback(), "]");
        if (s.state() == v1::STEP_STATE_FAILED && !s.output_log().empty()) {
          note = absl::StrCat(note, " (whole output: ", s.output_log(), ")");
        }
        row.push_back(note);
      }
      rows.push_back(row);
    }
    PrintTable(c.out, rows, rows);
  }
}

int ExitFor(v1::RolloutState state) {
  if (state == v1::ROLLOUT_STATE_SUCCEEDED) return kExitOk;
  if (state == v1::ROLLOUT_STATE_FAILED) return kExitRolloutFailed;
  if (state == v1::ROLLOUT_STATE_HALTED) return kExitRolloutHalted;
  if (state == v1::ROLLOUT_STATE_ABORTED) return kExitRolloutAborted;
  if (state == v1::ROLLOUT_STATE_AWAITING_APPROVAL) return kExitAwaitingApproval;
  return kExitError;
}

absl::StatusOr<v1::Rollout> GetRollout(Context& c, v1::Lockstep::Stub& stub, const std::string& id,
                                       grpc::Status* status) {
  v1::GetRolloutRequest req;
  req.set_id(id);
  v1::RolloutResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(Deadline(kReadSeconds));
  *status = stub.GetRollout(&ctx, req, &resp);
  (void)c;
  if (!status->ok()) return absl::UnavailableError(status->error_message());
  return resp.rollout();
}

// Progress bars, one per stage, redrawn in place on a terminal.
class Progress {
 public:
  explicit Progress(std::ostream& out) : out_(out) {}
  void Clear() {
    for (int i = 0; i < drawn_; ++i) out_ << "\033[1A\033[2K";
    drawn_ = 0;
  }
  void Draw(const v1::Rollout& r) {
    for (const v1::RolloutStage& st : r.stages()) {
      Counts n = CountSteps(r, st.environment());
      constexpr int kWidth = 30;
      int done = n.succeeded + n.failed + n.skipped;
      int filled = n.total == 0 ? kWidth : done * kWidth / n.total;
      out_ << absl::StrCat(
                  "  ", st.environment(),
                  std::string(st.environment().size() < 10 ? 10 - st.environment().size() : 1, ' '),
                  "[", std::string(static_cast<size_t>(filled), '#'),
                  std::string(static_cast<size_t>(kWidth - filled), '.'), "] ", done, "/", n.total,
                  "  ", WireName(st.state()),
                  n.failed ? absl::StrCat(" (", n.failed, " failed)") : "",
                  n.running ? absl::StrCat(" (", n.running, " running)") : "")
           << "\n";
      ++drawn_;
    }
    out_.flush();
  }

 private:
  std::ostream& out_;
  int drawn_ = 0;
};

// Follows a rollout's events until it ends (or waits for approval, which a
// pipeline cannot give itself). Returns the exit code for its final state.
// --retry-for DURATION (default 60s): how long a follower keeps
// reconnecting to a lockstepd that does not answer. False (after saying
// why) when malformed.
bool RetryFor(Context& c, absl::Duration* retry_for) {
  *retry_for = absl::ZeroDuration();
  std::optional<std::string> v = c.args.Option("retry-for");  // its default is in cli_args.cc
  if (!v) return true;
  int64_t seconds = 0;
  if (absl::SimpleAtoi(*v, &seconds) && seconds >= 0) {
    *retry_for = absl::Seconds(seconds);
    return true;
  }
  if (absl::ParseDuration(*v, retry_for) && *retry_for >= absl::ZeroDuration()) return true;
  c.err << "lockstep " << c.args.command << ": --retry-for takes a duration (60s, 5m) or "
        << "seconds, not '" << *v << "'\n";
  return false;
}

int Watch(Context& c, v1::Lockstep::Stub& stub, const std::string& id, absl::Duration retry_for) {
  const bool tty = ::isatty(1) && !c.json;
  // Since when lockstepd has not answered (InfiniteFuture: it answers).
  absl::Time unavailable_since = absl::InfiniteFuture();
  const bool verbose = c.args.Flag("verbose");
  Progress progress(c.out);
  int64_t after = 0;
  while (true) {
    v1::WatchRolloutRequest req;
    req.set_id(id);
    req.set_after_seq(after);
    grpc::ClientContext ctx;
    std::unique_ptr<grpc::ClientReader<v1::RolloutEvent>> reader = stub.WatchRollout(&ctx, req);
    v1::RolloutEvent e;
    bool awaiting = false;
    while (reader->Read(&e)) {
      unavailable_since = absl::InfiniteFuture();
      after = e.seq();
      if (!c.json && (e.kind() != v1::EVENT_KIND_OUTPUT || verbose)) {
        if (tty) progress.Clear();
        std::string where = e.database().empty() ? e.environment()
                                                 : absl::StrCat(e.environment(), "/", e.database());
        c.out << Time(e.at()).substr(11, 8) << "  " << WireName(e.kind())
              << (where.empty() ? "" : "  " + where) << "  " << e.message() << "\n";
        if (tty) {
          grpc::Status s;
          absl::StatusOr<v1::Rollout> r = GetRollout(c, stub, id, &s);
          if (r.ok()) progress.Draw(*r);
        }
      }
      // Replayed events carry the rollout's state now: stop only when it
      // still waits (a pipeline cannot approve itself).
      if (e.kind() == v1::EVENT_KIND_AWAITING_APPROVAL &&
          e.rollout_state() == v1::ROLLOUT_STATE_AWAITING_APPROVAL) {
        awaiting = true;
        ctx.TryCancel();
        break;
      }
    }
    grpc::Status s = reader->Finish();
    if (!awaiting && !s.ok() && s.error_code() != grpc::StatusCode::CANCELLED) {
      if (s.error_code() == grpc::StatusCode::UNAVAILABLE) {
        // lockstepd restarted (or is restarting): follow again from where
        // we were, for a while; a wrong --server must not hang forever.
        const absl::Time now = absl::Now();
        if (unavailable_since == absl::InfiniteFuture()) {
          unavailable_since = now;
          c.err << "lockstep " << c.args.command << ": lockstepd at " << c.server
                << " is unavailable; reconnecting for up to " << absl::FormatDuration(retry_for)
                << " (--retry-for)\n";
        }
        if (now - unavailable_since >= retry_for) return RpcFailure(c, s);
        ::sleep(1);
        continue;
      }
      return RpcFailure(c, s);
    }
    grpc::Status gs;
    absl::StatusOr<v1::Rollout> r = GetRollout(c, stub, id, &gs);
    if (!r.ok()) return RpcFailure(c, gs);
    if (!awaiting && r->state() != v1::ROLLOUT_STATE_SUCCEEDED &&
        r->state() != v1::ROLLOUT_STATE_FAILED && r->state() != v1::ROLLOUT_STATE_HALTED &&
        r->state() != v1::ROLLOUT_STATE_ABORTED) {
      continue;  // the stream ended early (e.g. a deadline); follow on
    }
    if (c.json) {
      JsonWriter w;
      WriteRollout(w, *r);
      c.out << w.Finish();
    } else {
      if (tty) progress.Clear();
      c.out << "\n";
      PrintRollout(c, *r, false);
      if (r->state() == v1::ROLLOUT_STATE_AWAITING_APPROVAL) {
        c.out << "\nwaiting for approval: lockstep approve " << id << "\n";
      }
    }
    return ExitFor(r->state());
  }
}

// --limit N (N > 0), 0 when absent; false (after saying why) when bad.
bool LimitOption(Context& c, int* limit) {
  std::optional<std::string> l = c.args.Option("limit");
  if (!l) return true;
  if (absl::SimpleAtoi(*l, limit) && *limit > 0) return true;
  c.err << "lockstep " << c.args.command << ": --limit takes a positive number\n";
  return false;
}

int NeedId(Context& c) {
  if (c.args.positional.size() != 1) {
    c.err << "lockstep " << c.args.command << ": expects a rollout ID\n";
    return kExitUsage;
  }
  return kExitOk;
}

int ShowRollout(Context& c, const v1::Rollout& r, bool plan) {
  if (c.json) {
    JsonWriter w;
    WriteRollout(w, r);
    c.out << w.Finish();
  } else {
    PrintRollout(c, r, plan);
  }
  return kExitOk;
}

v1::StartRolloutRequest RolloutRequestFrom(const CliArgs& args) {
  v1::StartRolloutRequest req;
  // plan's default (heads) comes from its definition (cli_args.cc); rollout
  // has none and was refused without --to.
  req.set_target(args.Option("to").value_or(""));
  for (const std::string& e : CommaList(args, "env")) req.add_environments(e);
  for (const std::string& d : CommaList(args, "db")) req.add_databases(d);
  for (const std::string& l : CommaList(args, "allow-lint")) req.add_allow_lint(l);
  req.set_override_promotion(args.Flag("override-promotion"));
  req.set_override_window(args.Option("override-window").value_or(""));
  req.set_allow_drift(args.Flag("allow-drift"));
  req.set_actor(Actor(args));
  return req;
}

std::string ProblemText(const v1::PlanProblem& p) {
  return absl::StrCat(p.database().empty() ? p.code() : p.database(), ": ", p.message());
}

// `plan`: the plan, then what blocks it (exit 1), as `rollout` would refuse.
int Plan(Context& c, v1::Lockstep::Stub& stub) {
  v1::PlanRolloutResponse resp;
  int rc = Call(c, stub, &v1::Lockstep::Stub::PlanRollout, RolloutRequestFrom(c.args), &resp,
                kChangeSeconds);
  if (rc != kExitOk) return rc;
  if (c.json) {
    JsonWriter w;
    WritePlan(w, resp);
    c.out << w.Finish();
    return resp.problems_size() > 0 ? kExitError : kExitOk;
  }
  if (resp.problems_size() > 0) {
    c.err << "FAILED: cannot roll out " << resp.plan().target() << ":\n";
    for (const v1::PlanProblem& p : resp.problems()) {
      c.err << ProblemText(p) << "\n";
    }
    return kExitError;
  }
  PrintRollout(c, resp.plan(), true);
  for (const v1::PlanProblem& p : resp.overridden()) {
    c.out << "\noverridden: " << ProblemText(p);
  }
  if (resp.overridden_size() > 0) c.out << "\n";
  for (const std::string& note : resp.notes()) c.out << "\nnote: " << note;
  if (resp.notes_size() > 0) c.out << "\n";
  return kExitOk;
}

int Start(Context& c, v1::Lockstep::Stub& stub) {
  // A rollout changes databases: where to is said, never defaulted (plan,
  // which changes nothing, defaults to heads).
  if (!c.args.Option("to")) {
    c.err << "lockstep rollout: --to REV is required (e.g. --to heads); `lockstep plan` shows "
             "what it would do\n";
    return kExitUsage;
  }
  absl::Duration retry_for;
  if (!RetryFor(c, &retry_for)) return kExitUsage;
  v1::RolloutResponse resp;
  int rc = Call(c, stub, &v1::Lockstep::Stub::StartRollout, RolloutRequestFrom(c.args), &resp,
                kChangeSeconds);
  if (rc != kExitOk) return rc;
  if (c.args.Flag("watch") || c.args.Flag("wait")) {
    if (!c.json) c.out << "rollout " << resp.rollout().id() << " started\n";
    return Watch(c, stub, resp.rollout().id(), retry_for);
  }
  if (!c.json) {
    c.out << "rollout " << resp.rollout().id() << " started; follow it with: lockstep watch "
          << resp.rollout().id() << "\n\n";
  }
  return ShowRollout(c, resp.rollout(), false);
}

using Action = grpc::Status (v1::Lockstep::Stub::*)(grpc::ClientContext*,
                                                    const v1::RolloutActionRequest&,
                                                    v1::RolloutResponse*);

int Control(Context& c, v1::Lockstep::Stub& stub, Action action) {
  if (int u = NeedId(c); u != kExitOk) return u;
  v1::RolloutActionRequest req;
  req.set_id(c.args.positional[0]);
  req.set_actor(Actor(c.args));
  v1::RolloutResponse resp;
  int rc = Call(c, stub, action, req, &resp, kReadSeconds);
  if (rc != kExitOk) return rc;
  if (c.json) return ShowRollout(c, resp.rollout(), false);
  static const std::map<std::string, std::string> kDone = {
      {"approve", "approved"}, {"pause", "paused"}, {"resume", "resumed"}, {"abort", "aborting"}};
  c.out << "rollout " << resp.rollout().id() << ": " << kDone.at(c.args.command) << " by "
        << req.actor() << "\n";
  return kExitOk;
}

int Rollouts(Context& c, v1::Lockstep::Stub& stub) {
  v1::ListRolloutsRequest req;
  int limit = 0;
  if (!LimitOption(c, &limit)) return kExitUsage;
  req.set_limit(limit);
  v1::ListRolloutsResponse resp;
  int rc = Call(c, stub, &v1::Lockstep::Stub::ListRollouts, req, &resp, kReadSeconds);
  if (rc != kExitOk) return rc;
  if (c.json) {
    JsonWriter w;
    w.BeginObject().Key("rollouts").BeginArray();
    for (const v1::Rollout& r : resp.rollouts()) WriteRollout(w, r);
    w.EndArray().EndObject();
    c.out << w.Finish();
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"ID", "KIND", "TARGET", "STATE", "DONE", "CREATED", "BY", "REASON"}};
  for (const v1::Rollout& r : resp.rollouts()) {
    Counts n = CountSteps(r, "");
    rows.push_back({r.id(), r.kind(), r.target(), WireName(r.state()),
                    absl::StrCat(n.succeeded, "/", n.total,
                                 n.failed ? absl::StrCat(" (", n.failed, " failed)") : ""),
                    Time(r.created_at()), r.created_by(), r.reason()});
  }
  PrintTable(c.out, rows, rows);
  return kExitOk;
}

int Downgrade(Context& c, v1::Lockstep::Stub& stub) {
  if (c.args.positional.size() != 1 || c.args.positional[0].find('/') == std::string::npos ||
      !c.args.Option("to")) {
    c.err << "lockstep downgrade: expects ENV/NAME --to REV\n";
    return kExitUsage;
  }
  absl::Duration retry_for;
  if (!RetryFor(c, &retry_for)) return kExitUsage;
  const std::string& arg = c.args.positional[0];
  v1::DowngradeRequest req;
  req.set_environment(arg.substr(0, arg.find('/')));
  req.set_database(arg.substr(arg.find('/') + 1));
  req.set_target(*c.args.Option("to"));
  req.set_actor(Actor(c.args));
  v1::RolloutResponse resp;
  int rc = Call(c, stub, &v1::Lockstep::Stub::Downgrade, req, &resp, kChangeSeconds);
  if (rc != kExitOk) return rc;
  if (!c.json) c.out << "downgrade " << resp.rollout().id() << " started\n";
  return Watch(c, stub, resp.rollout().id(), retry_for);
}

int Stamp(Context& c, v1::Lockstep::Stub& stub) {
  if (c.args.positional.size() != 2 || c.args.positional[0].find('/') == std::string::npos) {
    c.err << "lockstep stamp: expects ENV/NAME REV\n";
    return kExitUsage;
  }
  const bool force = c.args.Flag("force");
  const std::optional<std::string> reason = c.args.Option("reason");
  if (force && (!reason || reason->empty())) {
    c.err << "lockstep stamp: --force needs --reason TEXT (it is recorded with the stamp)\n";
    return kExitUsage;
  }
  absl::Duration retry_for;
  if (!RetryFor(c, &retry_for)) return kExitUsage;
  const std::string& arg = c.args.positional[0];
  v1::StampRequest req;
  req.set_environment(arg.substr(0, arg.find('/')));
  req.set_database(arg.substr(arg.find('/') + 1));
  req.set_revision(c.args.positional[1]);
  req.set_actor(Actor(c.args));
  req.set_force(force);
  if (reason) req.set_reason(*reason);
  v1::RolloutResponse resp;
  int rc = Call(c, stub, &v1::Lockstep::Stub::Stamp, req, &resp, kChangeSeconds);
  if (rc != kExitOk) return rc;
  if (!c.json) c.out << "stamp " << resp.rollout().id() << " started\n";
  return Watch(c, stub, resp.rollout().id(), retry_for);
}

int Reapply(Context& c, v1::Lockstep::Stub& stub) {
  if (c.args.positional.empty() || c.args.positional.size() > 2 ||
      c.args.positional[0].find('/') == std::string::npos) {
    c.err << "lockstep reapply: expects ENV/NAME [REV]\n";
    return kExitUsage;
  }
  absl::Duration retry_for;
  if (!RetryFor(c, &retry_for)) return kExitUsage;
  const std::string& arg = c.args.positional[0];
  v1::ReapplyRequest req;
  req.set_environment(arg.substr(0, arg.find('/')));
  req.set_database(arg.substr(arg.find('/') + 1));
  if (c.args.positional.size() == 2) req.set_revision(c.args.positional[1]);
  req.set_actor(Actor(c.args));
  v1::RolloutResponse resp;
  int rc = Call(c, stub, &v1::Lockstep::Stub::Reapply, req, &resp, kChangeSeconds);
  if (rc != kExitOk) return rc;
  if (!c.json) c.out << "reapply " << resp.rollout().id() << " started\n";
  return Watch(c, stub, resp.rollout().id(), retry_for);
}

int Backups(Context& c, v1::Lockstep::Stub& stub) {
  v1::ListBackupsRequest req;
  if (!c.args.positional.empty()) {
    const std::string& arg = c.args.positional[0];
    req.set_environment(arg.substr(0, arg.find('/')));
    if (arg.find('/') != std::string::npos) req.set_database(arg.substr(arg.find('/') + 1));
  }
  int limit = 0;
  if (!LimitOption(c, &limit)) return kExitUsage;
  req.set_limit(limit);
  v1::ListBackupsResponse resp;
  int rc = Call(c, stub, &v1::Lockstep::Stub::ListBackups, req, &resp, kReadSeconds);
  if (rc != kExitOk) return rc;
  if (c.json) {
    JsonWriter w;
    w.BeginObject().Key("backups").BeginArray();
    for (const v1::Backup& b : resp.backups()) WriteBackup(w, b);
    w.EndArray().EndObject();
    c.out << w.Finish();
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"ID", "DATABASE", "REVISIONS", "SIZE", "CREATED", "FROM", "RESTORED", "SHA256", "PATH"}};
  for (const v1::Backup& b : resp.backups()) {
    const std::string restored = b.restored_by().empty()
                                     ? "-"
                                     : absl::StrCat(Time(b.restored_at()), " by ", b.restored_by());
    rows.push_back({std::to_string(b.id()), absl::StrCat(b.environment(), "/", b.database()),
                    Rows(b.revisions()), absl::StrCat(b.size_bytes()), Time(b.created_at()),
                    Origin(b), restored, b.sha256().substr(0, 12), b.path()});
  }
  PrintTable(c.out, rows, rows);
  return kExitOk;
}

int Restore(Context& c, v1::Lockstep::Stub& stub) {
  int64_t id = 0;
  if (c.args.positional.size() != 1 || !absl::SimpleAtoi(c.args.positional[0], &id) || id <= 0) {
    c.err << "lockstep restore: expects a backup ID (lockstep backups lists them)\n";
    return kExitUsage;
  }
  v1::RestoreBackupRequest req;
  req.set_id(id);
  req.set_actor(Actor(c.args));
  req.set_yes(c.args.Flag("yes"));
  absl::Duration retry_for;
  if (!RetryFor(c, &retry_for)) return kExitUsage;
  v1::RestoreBackupResponse resp;
  int rc = Call(c, stub, &v1::Lockstep::Stub::RestoreBackup, req, &resp, kRestoreSeconds);
  if (rc != kExitOk) return rc;
  // Its environment requires approval: the restore waits as a rollout.
  if (resp.has_rollout()) {
    if (!c.json) c.out << "restore " << resp.rollout().id() << " started\n";
    return Watch(c, stub, resp.rollout().id(), retry_for);
  }
  if (c.json) {
    JsonWriter w;
    w.BeginObject().Key("backup");
    WriteBackup(w, resp.backup());
    w.Key("revisions").StringArray(List(resp.revisions()));
    w.Key("safety_backup");
    if (resp.has_safety_backup()) {
      WriteBackup(w, resp.safety_backup());
    } else {
      w.Null();  // the database file was gone: nothing to back up
    }
    w.Key("changed").Bool(resp.changed()).EndObject();
    c.out << w.Finish();
    return kExitOk;
  }
  c.out << "restored " << resp.backup().environment() << "/" << resp.backup().database()
        << " from backup " << id << " (by " << resp.backup().restored_by() << "); it now holds "
        << Rows(resp.revisions()) << "\n";
  if (!resp.has_safety_backup()) {
    c.out << "no safety backup: the database file was gone\n";
    return kExitOk;
  }
  c.out << "safety backup " << resp.safety_backup().id() << " holds what it held before ("
        << Rows(resp.safety_backup().revisions()) << "); undo with: lockstep restore "
        << (resp.changed() ? "--yes " : "") << resp.safety_backup().id() << "\n";
  return kExitOk;
}

}  // namespace

// `lockstep audit [--since 24h] [--subject S] [--limit N]`: the audit log,
// newest first.
int Audit(Context& c, v1::Lockstep::Stub& stub) {
  v1::ListAuditRequest req;
  int limit = 0;
  if (!LimitOption(c, &limit)) return kExitUsage;
  req.set_limit(limit);
  if (auto since = c.args.Option("since")) {
    absl::Duration d;
    if (!absl::ParseDuration(*since, &d) || d < absl::ZeroDuration()) {
      c.err << "lockstep audit: --since takes a duration back from now (24h, 30m), not '" << *since
            << "'\n";
      return kExitUsage;
    }
    req.mutable_since()->set_seconds(absl::ToUnixSeconds(absl::Now() - d));
  }
  req.set_subject(c.args.Option("subject").value_or(""));
  v1::ListAuditResponse resp;
  int rc = Call(c, stub, &v1::Lockstep::Stub::ListAudit, req, &resp, kReadSeconds);
  if (rc != kExitOk) return rc;
  if (c.json) {
    JsonWriter w;
    w.BeginObject().Key("entries").BeginArray();
    for (const v1::AuditEntry& e : resp.entries()) {
      w.BeginObject().Key("id").Int(static_cast<long>(e.id())).Key("at").String(Time(e.at()));
      w.Key("subject").String(e.subject()).Key("method").String(e.method());
      w.Key("peer").String(e.peer()).Key("rpc").String(e.rpc()).Key("request").String(e.request());
      w.Key("code").String(e.code()).Key("message").String(e.message()).EndObject();
    }
    c.out << w.EndArray().EndObject().Finish();
    return kExitOk;
  }
  std::vector<std::vector<std::string>> rows = {
      {"ID", "AT", "SUBJECT", "PEER", "RPC", "RESULT", "REQUEST"}};
  for (const v1::AuditEntry& e : resp.entries()) {
    std::string result = e.code();
    if (!e.message().empty()) absl::StrAppend(&result, ": ", e.message().substr(0, 80));
    rows.push_back({std::to_string(e.id()), Time(e.at()),
                    e.subject().empty() ? "(" + e.method() + ")" : e.subject(), e.peer(), e.rpc(),
                    result, e.request()});
  }
  PrintTable(c.out, rows, rows);
  return kExitOk;
}

int RunRolloutCommand(Context& c, v1::Lockstep::Stub& stub) {
  const std::string& cmd = c.args.command;
  if (cmd == "plan") return Plan(c, stub);
  if (cmd == "rollout") {
    if (c.args.positional.size() == 1 && !c.args.Option("to")) {
      grpc::Status s;
      absl::StatusOr<v1::Rollout> r = GetRollout(c, stub, c.args.positional[0], &s);
      if (!r.ok()) return RpcFailure(c, s);
      return ShowRollout(c, *r, false);
    }
    if (!c.args.positional.empty()) {
      c.err << "lockstep rollout: use --to REV to start one, or give one ID to show it\n";
      return kExitUsage;
    }
    return Start(c, stub);
  }
  if (cmd == "watch") {
    if (int u = NeedId(c); u != kExitOk) return u;
    absl::Duration retry_for;
    if (!RetryFor(c, &retry_for)) return kExitUsage;
    return Watch(c, stub, c.args.positional[0], retry_for);
  }
  if (cmd == "rollouts") return Rollouts(c, stub);
  if (cmd == "approve") return Control(c, stub, &v1::Lockstep::Stub::ApproveRollout);
  if (cmd == "pause") return Control(c, stub, &v1::Lockstep::Stub::PauseRollout);
  if (cmd == "resume") return Control(c, stub, &v1::Lockstep::Stub::ResumeRollout);
  if (cmd == "abort") return Control(c, stub, &v1::Lockstep::Stub::AbortRollout);
  if (cmd == "downgrade") return Downgrade(c, stub);
  if (cmd == "stamp") return Stamp(c, stub);
  if (cmd == "reapply") return Reapply(c, stub);
  if (cmd == "backups") return Backups(c, stub);
  if (cmd == "audit") return Audit(c, stub);
  return Restore(c, stub);
}

}  // namespace lockstep::client
