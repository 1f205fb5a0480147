# SPDX-License-Identifier: MIT
#
# Bash completion for scctl(1): commands, options, and user names from the
# state directory (the peers whose keys are pinned, the identities for
# --user), relay addresses from known_servers, files for --config and the
# admin commands' --control. Installed as "scctl" in
# the bash-completion directory; needs nothing from bash-completion itself.

# The state directory scctl would use: --home, $SECURECHAT_HOME,
# $XDG_DATA_HOME/securechat or ~/.local/share/securechat (see scctl(1)).
_scctl_home() { # HOME-OPTION
	local h=${1:-${SECURECHAT_HOME:-}}
	if [[ -z $h ]]; then
		if [[ ${XDG_DATA_HOME:-} == /* ]]; then
			h=$XDG_DATA_HOME/securechat
		else
			h=~/.local/share/securechat
		fi
	fi
	printf '%s\n' "${h/#\~/$HOME}"
}

# Users whose keys are pinned: HOME/peers/HOST_PORT/USER, for the relay
# given with --server (or $SECURECHAT_SERVER), else for every relay.
_scctl_peers() { # HOME SERVER
	local s=${2,,} f
	local -a files
	if [[ -n $s ]]; then
		# The canonical address with its last ":" made "_" (scctl(1)).
		case $s in
		\[*\]:*) ;;
		\[*\]) s=$s:5000 ;;
		*:*:*) s=[$s]:5000 ;;
		*:*) ;;
		*) s=$s:5000 ;;
		esac
		files=("$1/peers/${s%:*}_${s##*:}"/*)
	else
		files=("$1"/peers/*/*)
	fi
	for f in "${files[@]}"; do
		[[ -f $f ]] && printf '%s\n' "${f##*/}"
	done | sort -u
}

_scctl() {
	local verbs="init connect send listen inbox users fingerprint trust prekeys rotate-key
		status sessions monitor kick reset-key reload help"
	local global_opts="--server --user --home --config --no-tls --json
		--server-fingerprint --timeout --help"
	local line=${COMP_LINE:0:COMP_POINT} cur prev= verb= opt_home= opt_server= i
	local -a words

	# Split the line ourselves: COMP_WORDS splits "host:port" and
	# "--opt=value" into pieces.
	read -ra words <<<"$line"
	if [[ $line == *[[:space:]] || ${#words[@]} -eq 0 ]]; then
		cur=
	else
		cur=${words[-1]}
		unset 'words[-1]'
	fi

	# Find the command and the options that matter for completion.
	local n_args=0 skip= text= v
	local -a matches
	for ((i = 1; i < ${#words[@]}; i++)); do
		local w=${words[i]}
		# send reads no options after the recipient: the rest is text.
		if [[ -n $text ]]; then
			n_args=$((n_args + 1))
			continue
		fi
		if [[ -n $skip ]]; then
			case $skip in
			--home) opt_home=$w ;;
			--server) opt_server=$w ;;
			esac
			skip=
			continue
		fi
		case $w in
		--home=*) opt_home=${w#*=} ;;
		--server=*) opt_server=${w#*=} ;;
		--server | --user | --home | --config | --server-fingerprint | --timeout | --bits | --control | --idempotency-key | --code)
			skip=$w ;;
		-*) ;;
		*)
			if [[ -z $verb ]]; then
				# scctl takes any prefix that names only one
				# command (or the command's full name).
				verb=$w
				matches=()
				for v in $verbs; do
					if [[ $v == "$w" ]]; then
						matches=("$v")
						break
					fi
					[[ $v == "$w"* ]] && matches+=("$v")
				done
				[[ ${#matches[@]} -eq 1 ]] && verb=${matches[0]}
			else
				n_args=$((n_args + 1))
				[[ $verb == send ]] && text=1
			fi
			;;
		esac
	done
	prev=$skip

	local value=$cur
	if [[ -z $prev && -z $text && $cur == --*=* ]]; then
		prev=${cur%%=*}
		value=${cur#*=}
	fi

	local home
	home=$(_scctl_home "$opt_home")
	local -a reply=()
	compopt +o filenames 2>/dev/null
	case $prev in
	--home)
		compopt -o filenames 2>/dev/null
		mapfile -t reply < <(compgen -d -- "$value")
		;;
	--config | --control)
		compopt -o filenames 2>/dev/null
		mapfile -t reply < <(compgen -f -- "$value")
		;;
	--user)
		local ids=()
		for i in "$home"/identity/*.key; do
			[[ -f $i ]] && i=${i##*/} && ids+=("${i%.key}")
		done
		mapfile -t reply < <(compgen -W "${ids[*]}" -- "$value")
		;;
	--server)
		local servers=
		[[ -r $home/known_servers ]] && servers=$(cut -d' ' -f1 "$home/known_servers")
		mapfile -t reply < <(compgen -W "$servers" -- "$value")
		;;
	--bits)
		mapfile -t reply < <(compgen -W "2048 3072 4096" -- "$value")
		;;
	--server-fingerprint | --timeout | --idempotency-key | --code) ;;
	*)
		if [[ -n $text ]]; then
			: # send's text: neither options nor names
		elif [[ $cur == -* ]]; then
			local opts=$global_opts
			case $verb in
			'') opts="$opts --version --control" ;;
			init) opts="$opts --bits --code" ;;
			rotate-key) opts="$opts --bits" ;;
			send) opts="$opts --wait --wait= --idempotency-key" ;;
			trust) opts="$opts --yes" ;;
			users) opts="$opts --registered --control" ;;
			status | sessions | monitor | kick | reset-key | reload) opts="$opts --control" ;;
			esac
			mapfile -t reply < <(compgen -W "$opts" -- "$cur")
		elif [[ -z $verb ]]; then
			mapfile -t reply < <(compgen -W "$verbs" -- "$cur")
		else
			case $verb,$n_args in
			send,0 | fingerprint,0 | trust,0 | kick,0 | reset-key,0)
				mapfile -t reply < <(compgen -W "$(_scctl_peers "$home" "${opt_server:-${SECURECHAT_SERVER:-}}")" -- "$cur")
				;;
			help,0)
				mapfile -t reply < <(compgen -W "$verbs" -- "$cur")
				;;
			prekeys,0)
				mapfile -t reply < <(compgen -W "rotate" -- "$cur")
				;;
			esac
		fi
		;;
	esac

	# Bash replaces only the part of the word after its last character
	# that is in COMP_WORDBREAKS (the "=" of --opt=value, the ":" of
	# host:port): complete whole words, then cut that prefix off.
	local pfx= strip= k
	[[ $value != "$cur" ]] && pfx=${cur%%=*}=
	for ((k = ${#cur} - 1; k >= 0; k--)); do
		if [[ $COMP_WORDBREAKS == *"${cur:k:1}"* ]]; then
			strip=${cur:0:k+1}
			break
		fi
	done
	COMPREPLY=()
	for i in "${reply[@]}"; do
		i=$pfx$i
		COMPREPLY+=("${i#"$strip"}")
	done
	if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *= ]]; then
		compopt -o nospace 2>/dev/null
	fi
}

complete -F _scctl scctl
