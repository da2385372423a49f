# paired.awk reads the raw output of run.sh (one or more raw.txt files) and
# prints, for each benchmark and rate unit (units ending in /s), how many
# times protograin's rate is protoactor-go's, taken pair by pair: the i-th
# sample of one peer against the i-th of the other. run.sh measures both
# peers in each run of the binary, one right after the other, so a pair
# shares the machine's phase, while the medians of ratios.txt may come from
# different minutes. Columns: pairs, and the median, lowest and highest
# ratio.
#
#   awk -f paired.awk results/final-1204k/raw.txt results/final-1204l/raw.txt

/^Benchmark/ {
	name = $1
	impl = name
	sub(/.*\/impl=/, "", impl)
	sub(/[\/-].*/, "", impl)
	sub(/\/impl=[^\/-]*/, "", name)
	sub(/^Benchmark/, "", name)
	for (i = 3; i < NF; i += 2) {
		if ($(i + 1) !~ /\/s$/)
			continue
		key = name " " $(i + 1)
		val[key, impl, ++count[key, impl]] = $i
		keys[key] = 1
	}
}

END {
	printf "%-36s %-14s %5s %8s %8s %8s\n", "benchmark", "unit", "pairs", "median", "lowest", "highest"
	for (key in keys) {
		n = 0
		for (i = 1; i <= count[key, "protoactor"] && i <= count[key, "protograin"]; i++) {
			if (val[key, "protoactor", i] == 0)
				continue
			r = val[key, "protograin", i] / val[key, "protoactor", i]
			# Insertion sort: a handful of samples.
			for (j = ++n; j > 1 && ratio[j - 1] > r; j--)
				ratio[j] = ratio[j - 1]
			ratio[j] = r
		}
		if (n == 0)
			continue
		median = (n % 2) ? ratio[(n + 1) / 2] : (ratio[n / 2] + ratio[n / 2 + 1]) / 2
		split(key, part, " ")
		lines[key] = sprintf("%-36s %-14s %5d %7.2fx %7.2fx %7.2fx", part[1], part[2], n, median, ratio[1], ratio[n])
	}
	# Sorted by benchmark, without relying on gawk's sorting.
	while (1) {
		first = ""
		for (key in lines)
			if (first == "" || key < first)
				first = key
		if (first == "")
			break
		print lines[first]
		delete lines[first]
	}
}
