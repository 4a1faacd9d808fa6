#include "voxd/cli/cli.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <ctime>
#include <iostream>

#include "voxd/common/man.hpp"
#include "voxd/common/rpc_client.hpp"
#include "voxd/common/units.hpp"

namespace voxd::cli {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr auto call_timeout = 30s;

std::string default_socket() {
  if (const char* s = std::getenv("VOXD_SOCKET"); s && *s) return s;
  return "/run/voxd/voxd.sock";
}

int fail(const error& e) {
  std::cerr << "voxd: " << e.message << "\n";
  return static_cast<int>(e.code);
}

std::uint64_t u64(const json& j, const char* k) {
  return j.contains(k) && j[k].is_number() ? j[k].get<std::uint64_t>() : 0;
}
double dbl(const json& j, const char* k) {
  return j.contains(k) && j[k].is_number() ? j[k].get<double>() : 0.0;
}
std::string str(const json& j, const char* k) {
  return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : "";
}

double percent(const json& m) {
  const auto total = u64(m, "bytes_total");
  if (str(m, "state") == "complete") return 100;
  return total == 0
             ? 0
             : 100.0 * static_cast<double>(u64(m, "bytes_done")) / static_cast<double>(total);
}

std::string progress_text(const json& m, int width) {
  const auto state = str(m, "state");
  const auto pct = percent(m);
  const auto rate = dbl(m, "rate");
  std::string eta = m.contains("eta_seconds") ? format_duration(dbl(m, "eta_seconds")) : "--:--";
  auto tail = fmt::format(" {:5.1f}% {}/{}  {}  ETA {}  origin {}  peers {}", pct,
                          format_bytes(u64(m, "bytes_done")), format_bytes(u64(m, "bytes_total")),
                          format_rate(rate), eta, format_bytes(u64(m, "bytes_from_origin")),
                          format_bytes(u64(m, "bytes_from_peers")));
  if (state == "waiting" && m.contains("reason"))
    tail = fmt::format(" waiting: {} (trying again in {})", str(m, "reason"),
                       format_duration(dbl(m, "retry_in_seconds")));
  else if (state == "waiting" && m.contains("lease") && m["lease"].is_object())
    tail = fmt::format(" waiting for {} ({} of {})", str(m["lease"], "holder"),
                       format_bytes(u64(m["lease"], "bytes_done")),
                       format_bytes(u64(m["lease"], "bytes_total")));
  else if (state != "downloading")
    tail = fmt::format(" {} {}", state, tail);
  const int bar_width = std::max(10, width - static_cast<int>(tail.size()) - 3);
  const int filled = static_cast<int>(pct / 100.0 * bar_width);
  std::string bar = "[";
  for (int i = 0; i < bar_width; ++i)
    bar += i < filled ? "#" : (i == filled ? ">" : ".");
  bar += "]";
  return bar + tail;
}

int terminal_width() {
  winsize ws{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) return ws.ws_col;
  return 100;
}

result<rpc::client*> connect(rpc::client& c, const std::string& socket) {
  if (auto s = c.connect(socket, 5s); !s) return s.err();
  return &c;
}

// Waits until the model is complete or failed, or `timeout` (seconds, 0: none) has passed.
int wait_for(rpc::client& c, json model, double timeout) {
  const auto key = str(model, "model");
  const auto deadline = timeout > 0 ? std::chrono::steady_clock::now() +
                                          std::chrono::duration_cast<std::chrono::milliseconds>(
                                              std::chrono::duration<double>(timeout))
                                    : std::chrono::steady_clock::time_point::max();
  auto sub = c.call("subscribe", {{"model", key}}, call_timeout);
  if (!sub) return fail(sub.err());
  model = (*sub)["status"];
  const bool tty = ::isatty(STDOUT_FILENO) == 1;
  auto last_print = std::chrono::steady_clock::now() - 1h;
  std::string last_state;
  int last_decile = -1;
  for (;;) {
    const auto state = str(model, "state");
    if (state == "complete") {
      if (tty) std::cout << "\r\033[K";
      std::cout << fmt::format("{} complete: {} in {}\n", key,
                               format_bytes(u64(model, "bytes_total")), str(model, "path"));
      return 0;
    }
    if (state == "error") {
      if (tty) std::cout << "\r\033[K" << std::flush;
      return fail(
          make_error(errc::download_failed, fmt::format("{}: {}", key, str(model, "error"))));
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      if (tty) std::cout << "\r\033[K" << std::flush;
      const auto why = str(model, "reason").empty() ? state : state + ": " + str(model, "reason");
      return fail(make_error(
          errc::timed_out,
          fmt::format("{}: not complete after {} ({}, {:.1f}%); the daemon goes on with it", key,
                      format_seconds(static_cast<std::uint64_t>(timeout)), why, percent(model))));
    }
    if (tty) {
      std::cout << "\r\033[K" << progress_text(model, terminal_width()) << std::flush;
    } else {
      // Plain lines for logs: on state changes, every 10%, and at most every 5 s otherwise.
      const int decile = static_cast<int>(percent(model) / 10);
      if (state != last_state || decile != last_decile || now - last_print >= 5s) {
        if (model.contains("reason"))
          std::cout << fmt::format("{} waiting: {} (trying again in {})\n", key,
                                   str(model, "reason"),
                                   format_duration(dbl(model, "retry_in_seconds")))
                    << std::flush;
        else
          std::cout << fmt::format("{} {} {:.1f}% {}/{} {} origin {} peers {}\n", key, state,
                                   percent(model), format_bytes(u64(model, "bytes_done")),
                                   format_bytes(u64(model, "bytes_total")),
                                   format_rate(dbl(model, "rate")),
                                   format_bytes(u64(model, "bytes_from_origin")),
                                   format_bytes(u64(model, "bytes_from_peers")))
                    << std::flush;
        last_print = now;
        last_state = state;
        last_decile = decile;
      }
    }
    auto msg = c.next_notification(std::min<std::chrono::milliseconds>(
        60s, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now)));
    if (!msg) {
      if (msg.err().code != errc::daemon_unreachable ||
          msg.err().message.find("timed out") == std::string::npos) {
        if (tty) std::cout << "\n";
        return fail(msg.err());
      }
      // Queued models are quiet; ask directly so a dead daemon is noticed.
      auto st = c.call("status", {{"model", key}}, call_timeout);
      if (!st) return fail(st.err());
      model = *st;
      continue;
    }
    if (*msg->method == "model.removed") {
      if (tty) std::cout << "\n";
      return fail(
          make_error(errc::cancelled, fmt::format("{} was removed while waiting for it", key)));
    }
    if (msg->params.is_object() && str(msg->params, "model") == key) model = msg->params;
  }
}

std::string cap_text(const json& limits, const char* dir) {
  const auto spec = str(limits, dir);
  const auto bps = u64(limits, fmt::format("{}_bytes_per_second", dir).c_str());
  if (spec == "off" || bps == 0 || spec.find('%') == std::string::npos) return spec;
  return fmt::format("{} of {} = {}", spec, format_rate(dbl(limits, "link_bytes_per_second")),
                     format_rate(static_cast<double>(bps)));
}

void print_status_table(const json& st) {
  std::cout << fmt::format("voxd-daemon {} (protocol {}), up {}, download cap {}, upload cap {}\n",
                           str(st, "version"), str(st, "protocol_version"),
                           format_duration(dbl(st, "uptime_seconds")),
                           cap_text(st["limits"], "download"), cap_text(st["limits"], "upload"));
  if (st.contains("peers") && st["peers"].is_object())
    std::cout << fmt::format("peers on {}  tracker {}  registry {}\n", str(st["peers"], "listen"),
                             str(st["peers"], "tracker"), str(st["peers"], "registry"));
  for (const auto& o : st["origins"])
    std::cout << fmt::format(
        "origin {}  {}  {} received{}\n", str(o, "url"),
        o.value("healthy", false) ? "ok" : "backing off", format_bytes(u64(o, "bytes")),
        str(o, "last_error").empty() ? "" : "  last error: " + str(o, "last_error"));
  if (st["models"].empty()) {
    std::cout << "no models; add one with `voxd add MODEL`\n";
    return;
  }
  std::cout << fmt::format("{:<40} {:<12} {:<18} {:>11} {:>10} {:>10} {:>10} {:>5}\n", "MODEL",
                           "STATE", "PROGRESS", "RATE", "ORIGIN", "PEERS", "UPLOADED", "CONN");
  for (const auto& m : st["models"])
    std::cout << fmt::format(
        "{:<40} {:<12} {:<18} {:>11} {:>10} {:>10} {:>10} {:>5}\n", str(m, "model"),
        str(m, "state"),
        fmt::format("{:.0f}% of {}", percent(m), format_bytes(u64(m, "bytes_total"))),
        str(m, "state") == "downloading" ? format_rate(dbl(m, "rate")) : "",
        format_bytes(u64(m, "bytes_from_origin")), format_bytes(u64(m, "bytes_from_peers")),
        format_bytes(u64(m, "bytes_uploaded")), u64(m, "peers"));
}

void print_model(const json& m) {
  std::cout << fmt::format("model:      {}\nstate:      {}\n", str(m, "model"), str(m, "state"));
  if (m.contains("reason"))
    std::cout << fmt::format("waiting:    {} (trying again in {})\n", str(m, "reason"),
                             format_duration(dbl(m, "retry_in_seconds")));
  if (!str(m, "alias").empty()) std::cout << fmt::format("alias:      {}\n", str(m, "alias"));
  if (!str(m, "commit").empty()) std::cout << fmt::format("commit:     {}\n", str(m, "commit"));
  std::cout << fmt::format("progress:   {:.1f}% ({} of {}, {} of {} files)\n", percent(m),
                           format_bytes(u64(m, "bytes_done")), format_bytes(u64(m, "bytes_total")),
                           u64(m, "files_done"), u64(m, "files_total"));
  std::cout << fmt::format("rate:       {}\n", format_rate(dbl(m, "rate")));
  std::cout << fmt::format(
      "origins:    {}\npeers:      {} (LAN {}, WAN {}), {} connected\nuploaded:   {}\n",
      format_bytes(u64(m, "bytes_from_origin")), format_bytes(u64(m, "bytes_from_peers")),
      format_bytes(u64(m, "bytes_from_peers_lan")), format_bytes(u64(m, "bytes_from_peers_wan")),
      u64(m, "peers"), format_bytes(u64(m, "bytes_uploaded")));
  if (m.contains("lease") && m["lease"].is_object()) {
    const auto& l = m["lease"];
    std::cout << fmt::format("lease:      {} {} first ({}: {} of {})\n",
                             l.value("ours", false) ? "this daemon" : str(l, "holder"),
                             l.value("ours", false) ? "fetches it" : "fetches it; waiting",
                             str(l, "file"), format_bytes(u64(l, "bytes_done")),
                             format_bytes(u64(l, "bytes_total")));
  }
  if (m.contains("group") && m["group"].is_object()) {
    const auto& g = m["group"];
    std::cout << fmt::format(
        "first fetch: with {} daemons; this one has fetched {} pieces of {} and has {} to go "
        "({} of {} reported by all)\n",
        u64(g, "members"), u64(g, "pieces_done"), str(g, "file"), u64(g, "pieces_claimed"),
        u64(g, "pieces_reported"), u64(g, "pieces"));
  }
  if (!str(m, "path").empty()) std::cout << fmt::format("path:       {}\n", str(m, "path"));
  if (!str(m, "error").empty()) std::cout << fmt::format("error:      {}\n", str(m, "error"));
}

// One command's synopsis: its positionals, then its options in brackets.
std::string man_synopsis(const CLI::App& sub) {
  std::string out = fmt::format("\\fB{}\\fR", roff(sub.get_name()));
  for (const auto* o : sub.get_options()) {
    if (o == sub.get_help_ptr()) continue;
    if (o->get_positional()) {
      const auto name = fmt::format("\\fI{}\\fR", roff(o->get_name()));
      out += o->get_required() ? " " + name : " [" + name + "]";
    } else {
      out += fmt::format(" [\\fB{}\\fR{}]", roff(o->get_name()),
                         o->get_expected_max() == 0 ? "" : " \\fIVALUE\\fR");
    }
  }
  return out;
}

// voxd(1), generated from the commands defined above so that it cannot drift from them.
std::string render_man_page(const CLI::App& app) {
  std::string out =
      "\\\" Generated by `voxd --print-man` from the command table in cli/src/cli.cpp.\n"
      ".TH VOXD 1 \"\" \"voxd\" \"User Commands\"\n"
      ".SH NAME\nvoxd \\- get AI models onto this machine through the voxd daemon\n"
      ".SH SYNOPSIS\n\\fBvoxd\\fR [\\fB\\-\\-socket\\fR \\fIPATH\\fR] \\fICOMMAND\\fR "
      "[\\fIARGUMENTS\\fR]\n"
      ".SH DESCRIPTION\n\\fBvoxd\\fR asks the local \\fBvoxd\\-daemon\\fR(8) over its Unix "
      "socket to fetch models, verified against the Hub's hashes, into the Hugging Face cache; "
      "the daemon takes every piece from peers or origins, whichever gives it soonest. Members of "
      "group \\fBvoxd\\fR may use it.\n"
      ".SH COMMANDS\n";
  for (const auto* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    out += fmt::format(".TP\n{}\n{}\n", man_synopsis(*sub), roff_help(sub->get_description()));
    for (const auto* o : sub->get_options()) {
      if (o == sub->get_help_ptr() || o->get_description().empty()) continue;
      out += fmt::format(".RS\n.TP\n\\fB{}\\fR\n{}\n.RE\n", roff(o->get_name(false, true)),
                         roff_help(o->get_description()));
    }
  }
  out += ".SH OPTIONS\n";
  for (const auto* o : app.get_options()) {
    if (o == app.get_help_ptr()) continue;
    out += fmt::format(".TP\n\\fB{}\\fR \\fIPATH\\fR\n{}\n", roff(o->get_name(false, true)),
                       roff_help(o->get_description()));
  }
  out +=
      ".SH ENVIRONMENT\n.TP\n\\fBVOXD_SOCKET\\fR\nThe daemon's socket when "
      "\\fB\\-\\-socket\\fR is not given.\n"
      ".SH EXIT STATUS\n";
  for (int code = 0; code <= static_cast<int>(errc::no_space); ++code)
    out += fmt::format(".TP\n\\fB{}\\fR\n{}\n", code, roff(to_string(static_cast<errc>(code))));
  out +=
      ".SH FILES\n.TP\n.I /run/voxd/voxd.sock\nThe control socket of \\fBvoxd.service\\fR.\n"
      ".TP\n.I /var/lib/voxd/hub\nThe model store; point \\fBHF_HUB_CACHE\\fR at it.\n"
      ".SH SEE ALSO\n\\fBvoxd\\-daemon\\fR(8), \\fBvoxd.yaml\\fR(5), \\fBvoxd\\-tracker\\fR(8)\n";
  return out;
}

}  // namespace

int run(int argc, char** argv) {
  CLI::App app{"voxd: get models onto this machine fast, verified, into the Hugging Face cache"};
  app.require_subcommand(1);
  std::string socket = default_socket();
  app.add_option("--socket", socket,
                 "Daemon control socket (default: $VOXD_SOCKET or /run/voxd/voxd.sock)");

  std::string model, revision, direction, rate;
  bool detach = false, as_json = false;

  auto* add = app.add_subcommand(
      "add", "Fetch a model; waits with a progress bar until it is complete and verified");
  add->add_option("MODEL", model, "Alias (voxcpm-1.5) or repository (org/name[@revision])")
      ->required();
  add->add_option("-r,--revision", revision,
                  "Branch, tag or commit (default: the alias's, else main)");
  add->add_flag("-d,--detach", detach, "Queue the model and return at once");
  std::string timeout;
  add->add_option("--timeout", timeout,
                  "Give up waiting after this long (90s, 10m, 2h) with exit status 13; the "
                  "daemon goes on with the model");

  auto* ls = app.add_subcommand("ls", "List the daemon's models");
  ls->add_flag("--json", as_json, "Machine-readable output");

  auto* status = app.add_subcommand("status", "Daemon status, or one model's");
  status->add_option("MODEL", model, "Model to show");
  status->add_flag("--json", as_json, "Machine-readable output");

  auto* pause = app.add_subcommand("pause", "Pause a model's download (partial data is kept)");
  pause->add_option("MODEL", model)->required();
  auto* resume = app.add_subcommand("resume", "Resume a paused or failed model");
  resume->add_option("MODEL", model)->required();
  auto* rm =
      app.add_subcommand("rm", "Remove a model from the queue and the store (shared blobs stay)");
  rm->add_option("MODEL", model)->required();
  auto* path = app.add_subcommand("path", "Print a complete model's snapshot directory");
  path->add_option("MODEL", model)->required();

  auto* limit =
      app.add_subcommand("limit",
                         "Show the rate caps and current rates, or set one (kept across restarts): "
                         "voxd limit download 20MB/s|off, voxd limit upload 30%|20MB/s|off");
  limit->add_option("DIRECTION", direction, "download or upload")
      ->check(CLI::IsMember({"download", "upload"}));
  limit->add_option("RATE", rate,
                    "A rate such as 20MB/s or 200Mbit, a share of the link (upload: "
                    "30%), or off");

  auto* peers_cmd = app.add_subcommand("peers", "List a model's connected peers");
  peers_cmd->add_option("MODEL", model)->required();
  peers_cmd->add_flag("--json", as_json, "Machine-readable output");
  bool dry_run = false;
  auto* gc = app.add_subcommand(
      "gc", "Remove models not used for store.evict_after, least recently used first");
  gc->add_flag("-n,--dry-run", dry_run, "List what would be removed; remove nothing");
  gc->add_flag("--json", as_json, "Machine-readable output");

  if (argc == 2 && std::string_view(argv[1]) == "--print-man") {
    std::cout << render_man_page(app);
    return 0;
  }
  // CLI11 would report an unknown command as a missing one; name it instead.
  if (argc > 1 && argv[1][0] != '-') {
    const std::string first = argv[1];
    const auto subs = app.get_subcommands([](const CLI::App*) { return true; });
    if (std::none_of(subs.begin(), subs.end(),
                     [&](const CLI::App* s) { return s->get_name() == first; })) {
      std::string names;
      for (const auto* s : subs)
        names += (names.empty() ? "" : ", ") + s->get_name();
      std::cerr << fmt::format("voxd: unknown command '{}' (commands: {}; see voxd --help)\n",
                               first, names);
      return static_cast<int>(errc::usage);
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : static_cast<int>(errc::usage);
  }

  rpc::client client;
  auto c = connect(client, socket);
  if (!c) return fail(c.err());

  auto call = [&](std::string_view method, json params) {
    return client.call(method, std::move(params), call_timeout);
  };

  if (add->parsed()) {
    double wait_s = 0;
    if (!timeout.empty()) {
      auto d = parse_duration(timeout);
      if (!d) return fail(make_error(errc::usage, "--timeout: " + d.err().message));
      wait_s = *d;
    }
    json params{{"model", model}};
    if (!revision.empty()) params["revision"] = revision;
    auto r = call("add", params);
    if (!r) return fail(r.err());
    if (detach) {
      std::cout << fmt::format("{} {}\n", str(*r, "model"), str(*r, "state"));
      return 0;
    }
    return wait_for(client, *r, wait_s);
  }
  if (ls->parsed() || status->parsed()) {
    json params = json::object();
    if (!model.empty()) params["model"] = model;
    auto r = call(ls->parsed() ? "ls" : "status", params);
    if (!r) return fail(r.err());
    if (as_json) {
      std::cout << r->dump(2) << "\n";
    } else if (ls->parsed()) {
      for (const auto& m : (*r)["models"])
        std::cout << fmt::format("{:<40} {:<12} {:>10}  {}\n", str(m, "model"), str(m, "state"),
                                 format_bytes(u64(m, "bytes_total")), str(m, "path"));
    } else if (!model.empty()) {
      print_model(*r);
    } else {
      print_status_table(*r);
    }
    return 0;
  }
  for (auto* sub : {pause, resume, rm}) {
    if (!sub->parsed()) continue;
    auto r = call(sub->get_name(), {{"model", model}});
    if (!r) return fail(r.err());
    if (sub == rm)
      std::cout << fmt::format("removed {}\n", str(*r, "removed"));
    else
      std::cout << fmt::format("{} {}\n", str(*r, "model"), str(*r, "state"));
    return 0;
  }
  if (path->parsed()) {
    auto r = call("path", {{"model", model}});
    if (!r) return fail(r.err());
    std::cout << str(*r, "path") << "\n";
    return 0;
  }
  if (limit->parsed()) {
    json params = json::object();
    if (!direction.empty()) {
      if (rate.empty())
        return fail(
            make_error(errc::usage, fmt::format("limit {} needs a RATE (or off)", direction)));
      params = {{"direction", direction}, {"rate", rate}};
    }
    auto r = call("limit", params);
    if (!r) return fail(r.err());
    std::cout << fmt::format(
        "download: {:<28} now {}\nupload:   {:<28} now {}\nlink:     {}{}\n",
        cap_text(*r, "download"), format_rate(dbl(*r, "download_rate")), cap_text(*r, "upload"),
        format_rate(dbl(*r, "upload_rate")),
        str(*r, "link") == "auto"
            ? fmt::format("auto (measured {})", format_rate(dbl(*r, "link_bytes_per_second")))
            : str(*r, "link"),
        r->value("lan_uncapped", false) ? ", LAN peers uncapped" : "");
    return 0;
  }
  if (peers_cmd->parsed()) {
    auto r = call("peers", {{"model", model}});
    if (!r) return fail(r.err());
    if (as_json) {
      std::cout << r->dump(2) << "\n";
      return 0;
    }
    if ((*r)["peers"].empty()) {
      std::cout << fmt::format("{}: no connected peers\n", str(*r, "model"));
      return 0;
    }
    std::cout << fmt::format("{:<24} {:<4} {:<20} {:>11} {:>11} {:>9}  {}\n", "ADDRESS", "NET",
                             "CLIENT", "DOWN", "UP", "PIECES", "FILE");
    for (const auto& p : (*r)["peers"])
      std::cout << fmt::format(
          "{:<24} {:<4} {:<20} {:>11} {:>11} {:>9}  {}\n", str(p, "address"), str(p, "network"),
          str(p, "client").substr(0, 20), format_rate(dbl(p, "download_rate")),
          format_rate(dbl(p, "upload_rate")),
          p.value("seed", false) ? std::string("seed")
                                 : fmt::format("{}/{}", u64(p, "pieces"), u64(p, "pieces_total")),
          str(p, "file"));
    return 0;
  }
  if (gc->parsed()) {
    auto r = call("gc", {{"dry_run", dry_run}});
    if (!r) return fail(r.err());
    if (as_json) {
      std::cout << r->dump(2) << "\n";
      return 0;
    }
    if (str(*r, "evict_after") == "off") {
      std::cout << "store.evict_after is off: nothing is evicted (set it, e.g. to 30d)\n";
      return 0;
    }
    for (const auto& m : (*r)["models"]) {
      const auto last = static_cast<std::time_t>(m.value("last_used", std::int64_t{0}));
      std::tm tm{};
      ::gmtime_r(&last, &tm);
      std::cout << fmt::format("{} {}  last used {:%Y-%m-%d %H:%M} UTC, frees {}\n",
                               dry_run ? "would remove" : "removed", str(m, "model"), tm,
                               format_bytes(u64(m, "bytes")));
    }
    std::cout << fmt::format("{} model(s) not used for {}; {} {}\n", (*r)["models"].size(),
                             str(*r, "evict_after"), dry_run ? "would free" : "freed",
                             format_bytes(u64(*r, "bytes")));
    return 0;
  }
  return static_cast<int>(errc::usage);
}

}  // namespace voxd::cli
