# Shared by the scripts under scripts/ (source it from the repository's root).

# wait_http URL: waits up to 10 s for URL to answer 2xx; otherwise says so and fails.
wait_http() {
  for _ in $(seq 1 200); do
    curl -fs -o /dev/null "$1" && return 0
    sleep 0.05
  done
  echo "no answer from $1" >&2
  return 1
}

# wait_port PORT: waits up to 10 s for something to listen on 127.0.0.1:PORT.
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2
  return 1
}

# median: the median of the numbers on stdin, one a line.
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# field NAME KEY: the median of KEY=VALUE over the lines of the file $results that start with
# NAME (a benchmark's one line a run).
field() { grep "^$1 " "$results" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }' | median; }
